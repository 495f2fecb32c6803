"""``python -m vidgen.train [group=option ...] [key=value ...]``: train a video diffusion model.

With no arguments: a tiny Latte (variant 1) on the built-in synthetic data, on the CPU, in a few minutes.
Everything the run writes goes under its Hydra run directory: the resolved config, TensorBoard logs (loss
curves and sample videos), sample .mp4 files and checkpoints.
"""

from __future__ import annotations

import sys
import time
import warnings
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
from vidgen.lit.callbacks import InterruptCheckpoint

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# The frozen EMA twin and autoencoder are in eval mode on purpose; Lightning's notice about it is noise.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def resolve_ckpt_path(value: str | None, run_dir: Path, runs_root: Path) -> Path | None:
    """``ckpt_path``: None -> fresh start; ``last`` -> newest ``last.ckpt`` (this run dir first); or a file."""
    if value in (None, ""):
        return None
    if value == "last":
        here = run_dir / "checkpoints" / "last.ckpt"
        if here.is_file():
            return here
        candidates = sorted(runs_root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(
                "ckpt_path", f"'last' found no checkpoints/last.ckpt in {run_dir} or under {runs_root}"
            )
        return candidates[-1]
    path = Path(value)
    if not path.is_file():
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    return path


def _write_final_samples(module: Any, cfg: DictConfig, run_dir: Path) -> Path | None:
    """Generate ``samples.final_num_videos`` videos with the EMA weights into ``<run_dir>/samples/final``."""
    from vidgen.io.video import auto_scale, make_grid_video, write_mp4

    count = int(cfg.samples.final_num_videos)
    if count <= 0:
        return None
    folder = run_dir / "samples" / "final"
    print(f"Sampling {count} videos with {cfg.sampler.name} ({cfg.sampler.steps} steps) ...")
    videos = module.generate(count, generator=torch.Generator().manual_seed(int(cfg.seed)), progress=True)
    scale = auto_scale(videos.shape[-2], videos.shape[-1])
    fps = int(cfg.samples.fps)
    for i, video in enumerate(videos):
        write_mp4(folder / f"sample_{i:03d}.mp4", video, fps=fps, scale=scale)
    write_mp4(folder / "grid.mp4", make_grid_video(videos), fps=fps, scale=scale)
    return folder


def _evaluate_at_end(
    module: Any, datamodule: Any, cfg: DictConfig, run_dir: Path, trainer: L.Trainer, step: int
) -> dict:
    """Run the configured ``metrics`` on the trained model; write ``metrics.json`` and log ``eval/*``."""
    import json

    from vidgen.evaluate import build_metrics, evaluate_model, format_table

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
    for logger in trainer.loggers:
        logger.log_metrics({f"eval/{k}": v for k, v in result["metrics"].items()}, step=step)
    print(format_table(result["metrics"]))
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
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(ckpt_path) if ckpt_path else None)
    seconds = time.perf_counter() - start

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
        "train_seconds": seconds,
        "interrupted": interrupted,
        "metrics": metrics,
    }
    if interrupted:
        print(f"Stopped early. Resume with: python -m vidgen.train ckpt_path={checkpoints / 'last.ckpt'}")
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
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    loss = summary["metrics"].get("val/loss")
    return loss  # the value Hydra sweepers (e.g. Optuna) optimise


if __name__ == "__main__":
    main()
