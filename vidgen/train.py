"""``python -m vidgen.train [group=option ...] [key=value ...]``: train a video diffusion model.

With no arguments: a tiny Latte (variant 1) on the built-in synthetic data, on the CPU, in a few minutes.
Everything the run writes goes under its Hydra run directory: the resolved config, TensorBoard logs (loss
curves and sample videos), sample .mp4 files (.png images for one-frame models) and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module
from vidgen.lit.callbacks import InterruptCheckpoint, forward_stop_signals
from vidgen.runtime import CONFIG_DIR

# The frozen EMA twin and autoencoder are in eval mode on purpose; Lightning's notice about it is noise.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def resolve_ckpt_path(value: str | None, run_dir: Path, runs_root: Path) -> Path | None:
    """``ckpt_path``: None -> fresh start; ``last`` -> newest ``last.ckpt`` (this run dir first); or a path.

    A checkpoint is a ``.ckpt`` file, or a folder of the same name for sharded (FSDP) checkpoints.
    """
    if value in (None, ""):
        return None
    if value == "last":
        here = run_dir / "checkpoints" / "last.ckpt"
        if here.exists():
            return here
        candidates = sorted(runs_root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(
                "ckpt_path", f"'last' found no checkpoints/last.ckpt in {run_dir} or under {runs_root}"
            )
        return candidates[-1]
    path = Path(value)
    if not path.exists():
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    return path


def _write_final_samples(module: Any, cfg: DictConfig, run_dir: Path) -> Path | None:
    """Generate ``samples.final_num_videos`` videos with the EMA weights into ``<run_dir>/samples/final``
    (.mp4 files + a grid; .png images when the model makes one-frame samples)."""
    from vidgen.io.samples import write_samples
    from vidgen.io.video import auto_scale

    count = int(cfg.samples.final_num_videos)
    if count <= 0:
        return None
    folder = run_dir / "samples" / "final"
    print(f"Sampling {count} videos with {cfg.sampler.name} ({cfg.sampler.steps} steps) ...")
    videos = module.generate(count, generator=torch.Generator().manual_seed(int(cfg.seed)), progress=True)
    scale = auto_scale(videos.shape[-2], videos.shape[-1])
    write_samples(folder, videos, fps=int(cfg.samples.fps), scale=scale)
    return folder


def _evaluate_at_end(
    module: Any, datamodule: Any, cfg: DictConfig, run_dir: Path, trainer: L.Trainer, step: int
) -> dict:
    """Run the configured ``metrics`` on the trained model; write ``metrics.json`` and log ``eval/*``."""
    import json

    from vidgen.lit.periodic_evaluation import record_final_evaluation
    from vidgen.metrics.evaluation import build_metrics, evaluate_model, format_metrics_table

    settings = cfg.evaluation
    metrics = build_metrics(cfg.metrics, module.device, settings.num_real, settings.num_fake)
    result = evaluate_model(
        module,
        datamodule,
        OmegaConf.to_container(cfg.data, resolve=True),
        metrics,
        cfg.paths.cache_dir,
        batch_size=int(settings.batch_size),
        seed=int(cfg.seed),
    )
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    record_final_evaluation(trainer, run_dir, step, result["metrics"])  # the last row of metrics_history
    for logger in trainer.loggers:
        logger.log_metrics({f"eval/{k}": v for k, v in result["metrics"].items()}, step=step)
        logger.save()  # fit has ended: without this the CSV logger never writes these rows
    print(format_metrics_table(result["metrics"]))
    return result["metrics"]


_STEP_KEY, _INTERRUPTED_KEY = "vidgen/global_step", "vidgen/interrupted"


class _ReportFitResults(L.Callback):
    """Put the final step and the interrupt flag into ``trainer.callback_metrics`` at the end of fit.

    With ``strategy=ddp_spawn`` the fit runs in worker processes and Lightning copies back to the launching
    process only rank 0's weights and ``callback_metrics``, not the loop state or the callbacks; this makes
    the two values :func:`train` reports survive the trip. :func:`train` removes them from the metrics.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        interrupted = any(isinstance(c, InterruptCheckpoint) and c.interrupted for c in trainer.callbacks)
        trainer.callback_metrics[_STEP_KEY] = torch.tensor(float(trainer.global_step))
        trainer.callback_metrics[_INTERRUPTED_KEY] = torch.tensor(float(interrupted))


_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def _relaunch_only_this_job(trainer: L.Trainer) -> Iterator[None]:
    """Make script-relaunching strategies (``ddp``, ``fsdp``) start the extra ranks of THIS multirun job.

    Lightning starts ranks 1..N-1 by re-running ``sys.argv`` with ``hydra.run.dir=<hydra.run.dir>``. Inside
    a Hydra multirun that command still holds ``-m`` and the sweep, so every child would run the whole
    sweep again (into another sweep folder). For the duration of the fit, the command becomes this job's
    own overrides and ``hydra.run.dir`` this job's output folder, so a child is one rank of this job.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    relaunches = (
        isinstance(launcher, _SubprocessScriptLauncher)
        and trainer.world_size > 1
        and not trainer.strategy.cluster_environment.creates_processes_externally
    )
    if not (relaunches and HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN):
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_run_dir = list(sys.argv), hydra_cfg.run.dir
    # the launcher also exports these to the parent process, where they would make the next job believe
    # that its ranks were started externally (and wait for children that never come)
    saved_env = {name: os.environ.get(name) for name in _LAUNCH_ENV}
    OmegaConf.set_readonly(hydra_cfg, False)
    hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    try:
        yield
    finally:
        sys.argv = saved_argv
        hydra_cfg.run.dir = saved_run_dir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        OmegaConf.set_readonly(hydra_cfg, True)
        # the next job of the sweep starts its own ranks: this job's process group must not be reused
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _unsharded_copy(module: Any, cfg: DictConfig, run_dir: Path, resolved: dict) -> Any | None:
    """On rank 0: a fresh single-process module holding the gathered weights of a sharded one (None on
    the other ranks). A collective: every rank must call it."""
    from vidgen.lit.parallel import full_state_dict

    state = full_state_dict(module)
    if module.global_rank != 0:
        return None
    plain = build_module(cfg, samples_dir=run_dir / "samples", config=resolved)
    plain.load_state_dict(state, strict=True)
    return plain


def _init_from_pretrained(module: Any, cfg: DictConfig, ckpt_path: Path | None, run_dir: Path) -> None:
    """``pretrained.path``: initialise the denoiser (and restart its EMA twin) from a pretrained image model,
    on a fresh start only; the report goes to ``<run_dir>/pretrained_report.json`` (written by rank 0)."""
    node = cfg.get("pretrained")
    if not node or not node.get("path"):
        return
    if ckpt_path is not None:
        print(f"pretrained.path is ignored: resuming from {ckpt_path}, which holds the initialised weights")
        return
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    from vidgen.models.pretrained import init_module_from_pretrained

    report = init_module_from_pretrained(module, node.path, str(node.get("kind", "dit")))
    if rank_zero_only.rank == 0:
        report.write(run_dir / "pretrained_report.json")
        print(f"{report.summary()}\nReport: {run_dir / 'pretrained_report.json'}")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Validate the config, build data + module + trainer, fit, write final samples. Returns a summary."""
    validate_config(cfg)
    run_dir = Path(cfg.paths.run_dir)
    runs_root = Path(cfg.paths.output_root) / str(cfg.task_name) / "runs"
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))

    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, samples_dir=run_dir / "samples", config=resolved)
    _init_from_pretrained(module, cfg, ckpt_path, run_dir)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    callbacks.append(_ReportFitResults())
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)

    print(
        f"vidgen: {cfg.model._target_.rsplit('.', 1)[-1]} ({module.num_denoiser_params() / 1e6:.2f}M trainable "
        f"params) on {cfg.data.name}, {trainer.max_steps} steps; run directory {run_dir}"
    )
    if ckpt_path is not None:
        print(f"Resuming from {ckpt_path}")
    start = time.perf_counter()
    with _relaunch_only_this_job(trainer):
        with forward_stop_signals(trainer):  # spawn strategies: SIGTERM / Ctrl-C reach the workers
            trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
        seconds = time.perf_counter() - start
        return _finish_run(trainer, module, datamodule, callbacks, cfg, run_dir, resolved, seconds)


def _finish_run(
    trainer: L.Trainer,
    module: Any,
    datamodule: Any,
    callbacks: list[L.Callback],
    cfg: DictConfig,
    run_dir: Path,
    resolved: dict,
    seconds: float,
) -> dict[str, Any]:
    """After fit: collect the summary; on rank 0 write the final samples and run the evaluation."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # ddp_spawn: the fit ran in worker processes; these come from rank 0 (see _ReportFitResults)
    global_step = int(metrics.pop(_STEP_KEY, trainer.global_step))
    interrupted = bool(metrics.pop(_INTERRUPTED_KEY, 0.0)) or any(
        isinstance(c, InterruptCheckpoint) and c.interrupted for c in callbacks
    )
    checkpoints = run_dir / "checkpoints"
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "checkpoints": str(checkpoints),
        "global_step": global_step,
        "global_rank": trainer.global_rank,
        "train_seconds": seconds,
        "interrupted": interrupted,
        "metrics": metrics,
    }
    if interrupted:
        print(f"Stopped early. Resume with: python -m vidgen.train ckpt_path={checkpoints / 'last.ckpt'}")
        return summary
    if module.is_sharded:
        # FSDP with processes started outside fit (torchrun / SLURM / script re-launch): every rank is here
        # with its shards. Gather the weights once and let rank 0 sample / evaluate with a plain module.
        module = _unsharded_copy(module, cfg, run_dir, resolved)
        if module is None:
            return summary
    if trainer.is_global_zero and not trainer.fast_dev_run:
        samples = _write_final_samples(module, cfg, run_dir)
        summary["samples"] = str(samples) if samples else None
        if cfg.evaluation.at_end:
            summary["evaluation"] = _evaluate_at_end(module, datamodule, cfg, run_dir, trainer, global_step)
        print(
            f"Done in {seconds / 60:.1f} min ({global_step} steps). Samples: {samples}  "
            f"Checkpoints: {checkpoints}  TensorBoard: tensorboard --logdir {run_dir}"
        )
    return summary


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = train(cfg)
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
