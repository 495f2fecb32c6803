"""One arm of the method comparison (``experiment=compare/methods``): its stages, its budget, its costs.

:func:`run_arm` is what ``vidgen.train`` runs when the config has a ``compare`` node:

1. each stage of ``compare.stages`` (CMD's autoencoder) is trained first in ``<run dir>/<stage name>``, from
   this config with the stage's ``overrides`` applied (:func:`stage_config`), with its ``share`` of the
   budget; a stage that finished before (its ``stage.json`` exists) is not trained again;
2. the arm's own model is trained in the run directory with the rest of the budget;
3. ``<run dir>/costs.json`` is written (:func:`arm_costs`): parameters, training FLOPs per clip, steps and
   time per stage, sampling FLOPs and seconds per video, peak memory: the cost columns of
   ``experiments/compare/report.py``.

Budgets (:func:`apply_budget`, ``compare.budget``):

* ``steps``: ``compare.steps`` optimizer steps per arm, a stage gets ``round(share x steps)``;
* ``compute``: ``compare.train_flops`` training FLOPs per arm; a stage of ``share`` trains
  ``round(share x train_flops / (flops_per_clip x batch_size))`` steps, ``flops_per_clip`` counted by
  :func:`vidgen.benchmark.training_flops.training_flops` (so the arms' FLOPs agree up to one step each);
* ``wall``: ``compare.seconds`` of training per arm (``trainer.max_time``; the steps are what fits).

The last stage (the arm's own) is evaluated at ``compare.evaluations`` evenly spread points (the last one is
the end-of-training evaluation); earlier stages are not evaluated (CMD's autoencoder makes no videos).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vidgen.benchmark.memory import peak_memory, reset_peak_memory
from vidgen.benchmark.sampling_flops import CONVENTION
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR

__all__ = [
    "ARMS",
    "BUDGETS",
    "COSTS_FILE",
    "STAGE_FILE",
    "apply_budget",
    "arm_costs",
    "budget_steps",
    "check_compare",
    "run_arm",
    "stage_config",
]

#: the budget kinds of ``compare.budget``
BUDGETS = ("steps", "compute", "wall")
#: the arm's cost record, in the run directory
COSTS_FILE = "costs.json"
#: a finished stage's record, in its folder
STAGE_FILE = "stage.json"


def _own_share(cfg: DictConfig) -> float:
    """The budget share of the arm's own stage: what its earlier stages leave."""
    shares = [float(stage.share) for stage in cfg.compare.get("stages") or []]
    for index, share in enumerate(shares):
        if not 0.0 < share < 1.0:
            raise ConfigError(f"compare.stages.{index}.share", f"must be in (0, 1), got {share}")
    own = 1.0 - sum(shares)
    if own <= 0.0:
        raise ConfigError("compare.stages", f"the stages' shares sum to {sum(shares)}; they must leave some")
    return own


def stage_config(cfg: DictConfig, stage: DictConfig) -> DictConfig:
    """``cfg`` with ``stage.overrides`` applied and its own run directory ``<run dir>/<stage.name>``.

    An override ``group=option`` replaces the node ``group`` by ``conf/<group>/<option>.yaml`` (a file without
    a defaults list, such as a model); ``key=value`` sets one value. ``compare.stages`` is emptied (a stage
    has no stages of its own).
    """
    out = copy.deepcopy(cfg)
    with open_dict(out):
        for item in stage.get("overrides") or []:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise ConfigError(f"compare.stages.{stage.name}.overrides", f"'{item}' is not key=value")
            option_file = Path(CONFIG_DIR) / key / f"{value}.yaml"
            if "." not in key and option_file.is_file():
                out[key] = OmegaConf.load(option_file)
            else:
                OmegaConf.update(out, key, OmegaConf.create({"v": value}).v, force_add=True)
        out.paths.run_dir = str(Path(str(cfg.paths.run_dir)) / str(stage.name))
        out.compare.stages = []
    return out


def budget_steps(cfg: DictConfig, share: float, flops_per_step: float) -> int | None:
    """Optimizer steps of a stage with ``share`` of the budget (None for a wall-clock budget)."""
    kind = str(cfg.compare.budget)
    if kind == "steps":
        return max(1, round(share * int(cfg.compare.steps)))
    if kind == "compute":
        return max(1, round(share * float(cfg.compare.train_flops) / flops_per_step))
    return None


def _clock(seconds: float) -> str:
    """``DD:HH:MM:SS`` of ``seconds`` (rounded down to whole seconds, at least 1)."""
    total = max(1, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def apply_budget(cfg: DictConfig, share: float, last: bool) -> dict[str, Any]:
    """Set the steps (or time), validation, checkpoint and evaluation points of one stage in ``cfg``.

    Args:
        cfg: the stage's config (changed in place).
        share: its fraction of the arm's budget.
        last: the arm's own stage (evaluated at ``compare.evaluations`` points); earlier ones are not.

    Returns:
        the stage's plan: ``steps`` (None under a wall budget), ``seconds``, ``batch_size``,
        ``flops_per_clip``, ``flops_per_step``, ``params`` and the FLOP ``parts``.
    """
    from vidgen.benchmark.training_flops import training_flops

    kind = str(cfg.compare.budget)
    flops = training_flops(cfg)
    batch = int(cfg.data.batch_size)
    per_step = float(flops.per_clip) * batch
    steps = budget_steps(cfg, share, per_step)
    seconds = share * float(cfg.compare.seconds) if kind == "wall" else None
    evaluations = int(cfg.compare.evaluations)
    with open_dict(cfg):
        if steps is not None:
            cfg.trainer.max_steps = steps
            cfg.trainer.val_check_interval = steps
            cfg.callbacks.model_checkpoint.every_n_train_steps = steps
        else:
            cfg.trainer.max_time = _clock(seconds)
        cfg.evaluation.at_end = bool(last)
        if not last:
            cfg.evaluation.every_n_steps = None
        elif steps is not None:
            cfg.evaluation.every_n_steps = (
                math.ceil(steps / evaluations) if evaluations > 1 and steps >= evaluations else None
            )
    return {
        "steps": steps,
        "seconds": seconds,
        "batch_size": batch,
        "flops_per_clip": float(flops.per_clip),
        "flops_per_step": per_step,
        "params": int(flops.params),
        "parts": flops.as_dict(),
    }


def _sampling_seconds(checkpoint: Path, num_videos: int, seed: int) -> float | None:
    """Seconds per video of generating ``num_videos`` (one batch) with the checkpoint's module and sampler,
    after one warm-up video; None when ``num_videos`` is 0."""
    if num_videos <= 0:
        return None
    from vidgen.lit.build import load_module_from_checkpoint

    module, _ = load_module_from_checkpoint(checkpoint)
    module.generate(1, generator=torch.Generator().manual_seed(seed))  # warm-up
    start = time.perf_counter()
    module.generate(num_videos, generator=torch.Generator().manual_seed(seed), batch_size=num_videos)
    return (time.perf_counter() - start) / num_videos


def _sampling_flops(cfg: DictConfig) -> tuple[float, str, int]:
    """Sampling FLOPs of one video (all chains and decoders), the sampler's name and its model calls."""
    from vidgen.benchmark.sampling_flops import build_counting_module, sampling_flops
    from vidgen.benchmark.training_flops import counting_config

    counted = sampling_flops(build_counting_module(counting_config(cfg)))
    return float(counted.total_flops), counted.sampler, int(counted.model_calls)


def arm_costs(cfg: DictConfig, stages: list[dict[str, Any]], checkpoint: Path | None) -> dict[str, Any]:
    """The arm's cost record (``costs.json``; the fields ``experiments/compare/report.py`` reads)."""
    flops, sampler, calls = _sampling_flops(cfg)
    seconds = (
        _sampling_seconds(checkpoint, int(cfg.compare.sample_videos), int(cfg.seed))
        if checkpoint is not None and checkpoint.is_file()
        else None
    )
    memory, memory_kind = peak_memory()  # since run_arm started: the whole job, every stage
    return {
        "arm": str(cfg.compare.arm),
        "method": str(cfg.compare.method),
        "seed": int(cfg.seed),
        "budget": {
            "kind": str(cfg.compare.budget),
            "steps": int(cfg.compare.steps) if cfg.compare.budget == "steps" else None,
            "train_flops": float(cfg.compare.train_flops) if cfg.compare.budget == "compute" else None,
            "seconds": float(cfg.compare.seconds) if cfg.compare.budget == "wall" else None,
        },
        "params": sum(int(stage["params"]) for stage in stages),
        "stages": stages,
        "train_flops_per_clip": sum(float(stage["flops_per_clip"]) for stage in stages),
        "train_flops": sum(float(stage["train_flops"]) for stage in stages),
        "train_seconds": sum(float(stage["train_seconds"]) for stage in stages),
        "sample_flops_per_video": flops,
        "sample_seconds_per_video": seconds,
        "sampler": sampler,
        "model_calls": calls,
        "peak_memory_bytes": memory,
        "peak_memory_kind": memory_kind,
        "flop_convention": CONVENTION,
    }


def _stage_record(name: str, plan: dict[str, Any], summary: dict[str, Any], offset: float) -> dict[str, Any]:
    steps = int(summary["global_step"])
    return {
        "name": name,
        "steps": steps,
        "batch_size": plan["batch_size"],
        "params": plan["params"],
        "flops_per_clip": plan["flops_per_clip"],
        "flops_per_step": plan["flops_per_step"],
        "flops_offset": offset,
        "train_flops": steps * plan["flops_per_step"],
        "train_seconds": float(summary["train_seconds"]),
        "run_dir": str(summary["run_dir"]),
        "parts": plan["parts"],
    }


#: conf/arm/*.yaml
ARMS = ("latte", "latent_shift", "latent_vdm", "vdm", "cmd")


def check_compare(cfg: DictConfig) -> None:
    """The ``compare`` node's values, each failure naming its key (before anything is trained)."""
    node = cfg.compare
    if OmegaConf.is_missing(node, "arm"):
        raise ConfigError(
            "arm",
            f"no arm chosen: arm={'|'.join(ARMS)} for one, or the whole sweep with -m (python -m "
            "vidgen.train -m experiment=compare/methods scale=...)",
        )
    if str(node.budget) not in BUDGETS:
        raise ConfigError("compare.budget", f"must be one of {', '.join(BUDGETS)}, got {node.budget!r}")
    wanted = {"steps": "compare.steps", "compute": "compare.train_flops", "wall": "compare.seconds"}
    key = wanted[str(node.budget)]
    try:
        amount = float(OmegaConf.select(cfg, key))
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a positive number, got {OmegaConf.select(cfg, key)!r}") from None
    if not amount > 0:
        raise ConfigError(key, f"must be a positive number, got {amount}")
    for name, low in (("evaluations", 1), ("sample_videos", 0)):
        value = node.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"compare.{name}", f"must be an integer >= {low}, got {value!r}")
    _own_share(cfg)


def run_arm(cfg: DictConfig, train: Callable[[DictConfig], dict[str, Any]]) -> dict[str, Any]:
    """Train the arm of ``cfg`` (module docstring) with ``train`` (:func:`vidgen.lit.training.train`); returns the
    summary of its own stage plus ``costs``. An interrupted stage returns its summary at once (its
    ``exit_code`` says so; the same command resumes: finished stages are skipped)."""
    check_compare(cfg)
    reset_peak_memory()
    stages: list[dict[str, Any]] = []
    offset = 0.0
    for stage in cfg.compare.get("stages") or []:
        stage_cfg = stage_config(cfg, stage)
        folder = Path(str(stage_cfg.paths.run_dir))
        done = folder / STAGE_FILE
        if done.is_file():
            record = json.loads(done.read_text())
            print(f"vidgen: stage '{stage.name}' finished before ({folder}); not trained again")
        else:
            plan = apply_budget(stage_cfg, float(stage.share), last=False)
            summary = train(stage_cfg)
            if summary["exit_code"]:
                return summary
            record = _stage_record(str(stage.name), plan, summary, offset)
            if summary["global_rank"] == 0:  # every rank goes on to the next stage; rank 0 keeps the record
                done.write_text(json.dumps(record, indent=2))
        stages.append(record)
        offset += float(record["train_flops"])
    plan = apply_budget(cfg, _own_share(cfg), last=True)
    summary = train(cfg)
    if summary["exit_code"] or summary["global_rank"] != 0:
        return summary
    stages.append(_stage_record("diffusion", plan, summary, offset))
    checkpoint = Path(summary["checkpoints"]) / "last.ckpt"
    costs = arm_costs(cfg, stages, checkpoint)
    run_dir = Path(str(cfg.paths.run_dir))
    (run_dir / COSTS_FILE).write_text(json.dumps(costs, indent=2))
    print(
        f"vidgen: arm {costs['arm']}: {costs['train_flops'] / 1e12:.2f} TFLOPs of training in "
        f"{' + '.join(str(s['steps']) for s in stages)} steps; costs in {run_dir / COSTS_FILE}"
    )
    return {**summary, "costs": costs}
