"""One training run of ``python -m vidgen.train``: validate the config, build the data, the module and the
trainer, fit, then (rank 0) write the final samples and run the end-of-training evaluation; an interrupted fit
prints the command that resumes it.

The CLI module imports this (and with it torch and Lightning) only once Hydra has composed a config to train,
so ``python -m vidgen.train --help`` and ``--cfg job`` answer without loading them.
"""

from __future__ import annotations

import shlex
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.config.schema import validate_config
from vidgen.data.cached_datamodule import build_datamodule
from vidgen.data.num_classes import fill_num_classes
from vidgen.lit.build import build_module, unsharded_copy
from vidgen.lit.callbacks import InterruptCheckpoint, forward_stop_signals, interrupted_exit_code
from vidgen.lit.checkpoints import check_checkpoint, resolve_ckpt_path
from vidgen.lit.cpu_precision import warn_if_slow_bf16
from vidgen.lit.final_outputs import evaluate_at_end, write_final_samples
from vidgen.lit.fit_results import ReportFitResults, read_fit_results
from vidgen.lit.launch import relaunch_only_this_job
from vidgen.models.pretrained import apply_pretrained


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
        f"params) on {cfg.data.name}, {training_length(trainer.max_steps, cfg.trainer.get('max_time'))}; "
        f"run directory {run_dir}"
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


def training_length(max_steps: int, max_time: Any) -> str:
    """How long the fit runs, for the start-up line: ``2000 steps``, or under a wall-clock budget
    (``trainer.max_time``, e.g. the demo recipe's) ``as many steps as fit in 00:00:05:15 (20000 steps at
    most)``."""
    if max_time is None:
        return "no step limit" if max_steps == -1 else f"{max_steps} steps"
    if max_steps == -1:
        return str(max_time)
    return f"as many steps as fit in {max_time} ({max_steps} steps at most)"


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
