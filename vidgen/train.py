"""``python -m vidgen.train [group=option ...] [key=value ...]``: train a video diffusion model.

With no arguments: a tiny Latte (variant 1) on the built-in synthetic data, on the CPU, in a few minutes.
Everything the run writes goes under its Hydra run directory: the resolved config, TensorBoard logs (loss
curves and sample videos), sample .mp4 files (.png images for one-frame models) and checkpoints.
"""

from __future__ import annotations

import shlex
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.config.schema import validate_config
from vidgen.data.cached_datamodule import build_datamodule
from vidgen.data.num_classes import fill_num_classes
from vidgen.lit.build import build_module, unsharded_copy
from vidgen.lit.callbacks import InterruptCheckpoint, forward_stop_signals, interrupted_exit_code
from vidgen.lit.checkpoints import check_checkpoint, resolve_ckpt_path
from vidgen.lit.compare_arm import run_arm
from vidgen.lit.cpu_precision import warn_if_slow_bf16
from vidgen.lit.final_outputs import evaluate_at_end, write_final_samples
from vidgen.lit.fit_results import ReportFitResults, read_fit_results
from vidgen.lit.launch import relaunch_only_this_job
from vidgen.models.pretrained import apply_pretrained
from vidgen.runtime import CONFIG_DIR

# The frozen EMA twin and autoencoder are in eval mode on purpose; Lightning's notice about it is noise.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Validate the config, build data + module + trainer, fit, write final samples. Returns a summary."""
    fill_num_classes(cfg)  # data.num_classes: null -> counted from the data, before the model reads it
    validate_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    runs_root = Path(cfg.paths.output_root) / str(cfg.task_name) / "runs"
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir, runs_root)
    if ckpt_path is not None:  # an empty, cut or foreign file fails here, not after the model is built
        check_checkpoint(ckpt_path, resume=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))

    warn_if_slow_bf16(str(cfg.trainer.get("accelerator", "")), str(cfg.trainer.get("precision", "")))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg)  # data.cache: trains from the precomputed cache (checked here)
    module = build_module(cfg, samples_dir=run_dir / "samples", config=resolved)
    apply_pretrained(module, cfg, ckpt_path, run_dir)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    callbacks.append(ReportFitResults())
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    print(
        f"vidgen: {cfg.model._target_.rsplit('.', 1)[-1]} ({module.num_denoiser_params() / 1e6:.2f}M trainable "
        f"params) on {cfg.data.name}, {trainer.max_steps} steps; run directory {run_dir}"
    )
    if ckpt_path is not None:
        print(f"Resuming from {ckpt_path}")
    start = time.perf_counter()
    with relaunch_only_this_job(trainer):
        # spawn strategies: SIGTERM / Ctrl-C reach the workers; `received` says which one came
        with forward_stop_signals(trainer) as received:
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        seconds = time.perf_counter() - start
        return _finish_run(
            trainer, module, datamodule, callbacks, cfg, run_dir, resolved, seconds, received.signum
        )


def _finish_run(
    trainer: L.Trainer,
    module: Any,
    datamodule: Any,
    callbacks: list[L.Callback],
    cfg: DictConfig,
    run_dir: Path,
    resolved: dict,
    seconds: float,
    launcher_signal: int | None = None,
) -> dict[str, Any]:
    """After fit: collect the summary; on rank 0 write the final samples and run the evaluation.

    An interrupted fit writes nothing more: it prints the command that resumes it and puts the exit status
    (:func:`interrupted_exit_code` of the stop signal; ``launcher_signal``: the one the launching process of
    a spawn strategy received, whose workers always get SIGTERM) into the summary as ``exit_code``.
    """
    results = read_fit_results(trainer, callbacks)  # ddp_spawn: rank 0's, from the worker processes
    checkpoints = run_dir / "checkpoints"
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "checkpoints": str(checkpoints),
        "global_step": results.global_step,
        "global_rank": trainer.global_rank,
        "train_seconds": seconds,
        "interrupted": results.interrupted,
        "metrics": results.metrics,
        "exit_code": 0,
    }
    if results.interrupted:
        signum = launcher_signal or results.stop_signal or signal.SIGTERM
        summary["exit_code"] = interrupted_exit_code(signum)
        if trainer.is_global_zero:
            command = resume_command(
                run_dir, _interrupt_checkpoint(callbacks, checkpoints), _task_overrides()
            )
            print(
                f"Stopped early by {signal.Signals(signum).name} after step {results.global_step} (exit status "
                f"{summary['exit_code']}). Resume with: {command}"
            )
        return summary
    if module.is_sharded:
        # FSDP with processes started outside fit (torchrun / SLURM / script re-launch): every rank is here
        # with its shards. Gather the weights once and let rank 0 sample / evaluate with a plain module.
        module = unsharded_copy(module, cfg, run_dir / "samples", resolved)
        if module is None:
            return summary
    if trainer.is_global_zero and not trainer.fast_dev_run:
        samples = write_final_samples(module, cfg, run_dir, datamodule)
        summary["samples"] = str(samples) if samples else None
        if cfg.evaluation.at_end:
            summary["evaluation"] = evaluate_at_end(
                module, datamodule, cfg, run_dir, trainer, results.global_step
            )
        print(
            f"Done in {seconds / 60:.1f} min ({results.global_step} steps). Samples: {samples}  "
            f"Checkpoints: {checkpoints}  TensorBoard: tensorboard --logdir {run_dir}"
        )
    return summary


def _interrupt_checkpoint(callbacks: list[L.Callback], checkpoints: Path) -> Path:
    """Where the :class:`InterruptCheckpoint` callback wrote the checkpoint (``checkpoints/last.ckpt``)."""
    for callback in callbacks:
        if isinstance(callback, InterruptCheckpoint):
            return callback.ckpt_path
    return checkpoints / "last.ckpt"


def _task_overrides() -> list[str]:
    """The command line's overrides of this job (Hydra's ``overrides.task``); [] outside ``hydra.main``."""
    if not HydraConfig.initialized():
        return []
    return [str(item) for item in HydraConfig.get().overrides.task]


#: overrides that :func:`resume_command` sets itself
_RESUME_KEYS = ("ckpt_path", "hydra.run.dir")


def resume_command(run_dir: Path, checkpoint: Path, overrides: Sequence[str]) -> str:
    """The command that continues an interrupted run in the same run directory: the run's own overrides
    (without ``ckpt_path`` / ``hydra.run.dir``), ``hydra.run.dir=<run_dir>`` (the run directory, absolute)
    and ``ckpt_path=last`` (:func:`~vidgen.lit.checkpoints.resolve_ckpt_path` takes that directory's
    ``checkpoints/last.ckpt`` first), or the checkpoint's path when it was written elsewhere."""
    run_dir = Path(run_dir).absolute()
    kept = [item for item in overrides if item.split("=", 1)[0].lstrip("+~") not in _RESUME_KEYS]
    checkpoint = Path(checkpoint).absolute()
    ckpt = "last" if checkpoint == run_dir / "checkpoints" / "last.ckpt" else str(checkpoint)
    return shlex.join(
        ["python", "-m", "vidgen.train", *kept, f"hydra.run.dir={run_dir}", f"ckpt_path={ckpt}"]
    )


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: train; return the sweeper's objective (:func:`objective_value`) on rank 0.

    Exit status: 0 done; 2 a config error; 130 (Ctrl-C) or 143 (SIGTERM) stopped by the signal after writing
    the checkpoint that resumes it (:func:`interrupted_exit_code`); 1 any other failure (a crash).
    """
    try:
        # an arm of the method comparison (experiment=compare/methods): its stages, budget and costs.json
        summary = run_arm(cfg, train) if "compare" in cfg else train(cfg)
        if summary["exit_code"]:
            raise SystemExit(summary["exit_code"])
        if summary["global_rank"] != 0:
            return None  # ranks started by ddp / fsdp / SLURM: only rank 0 evaluates and reports
        return objective_value(summary, cfg.get("optimized_metric"))
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def objective_value(summary: dict[str, Any], name: str | None) -> float | None:
    """The value a Hydra sweeper (e.g. Optuna) optimises: ``optimized_metric`` looked up first among the
    end-of-training evaluation metrics (``evaluation.at_end=true``), then among the logged metrics
    (``val/loss``, ``train/loss``). ``None`` when no name is configured."""
    if not name:
        return None
    for source in (summary.get("evaluation") or {}, summary["metrics"]):
        if name in source:
            return float(source[name])
    available = sorted({*(summary.get("evaluation") or {}), *summary["metrics"]})
    raise ConfigError("optimized_metric", f"'{name}' was not produced by this run; available: {available}")


if __name__ == "__main__":
    main()
