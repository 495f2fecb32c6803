"""What a finished training run writes on rank 0: the final samples (``samples.final_num_videos``) and the
end-of-training evaluation (``evaluation.at_end``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from vidgen.io.samples import write_samples
from vidgen.io.video import auto_scale
from vidgen.lit.periodic_evaluation import record_final_evaluation
from vidgen.metrics.evaluation import build_metrics, evaluate_model, format_metrics_table

__all__ = ["evaluate_at_end", "write_final_samples"]


def write_final_samples(module: Any, cfg: DictConfig, run_dir: Path, datamodule: Any = None) -> Path | None:
    """Generate ``samples.final_num_videos`` videos with the EMA weights into ``<run_dir>/samples/final``
    (.mp4 files + a grid; .png images when the model makes one-frame samples). An autoencoder module (CMD's
    stage 1) writes evaluation clips beside their reconstructions instead. Returns the folder, or None
    when no final samples are configured."""
    count = int(cfg.samples.final_num_videos)
    if count <= 0:
        return None
    folder = run_dir / "samples" / "final"
    if getattr(module, "is_reconstruction_model", False):
        clips = datamodule.evaluation_dataset(count)
        videos = torch.stack([clips[i]["video"] for i in range(count)])
        print(f"Reconstructing {count} evaluation clips ...")
        module.write_reconstructions(folder, videos)
        return folder
    print(f"Sampling {count} videos with {cfg.sampler.name} ({cfg.sampler.steps} steps) ...")
    videos = module.generate(count, generator=torch.Generator().manual_seed(int(cfg.seed)), progress=True)
    scale = auto_scale(videos.shape[-2], videos.shape[-1])
    write_samples(folder, videos, fps=int(cfg.samples.fps), scale=scale)
    return folder


def evaluate_at_end(
    module: Any, datamodule: Any, cfg: DictConfig, run_dir: Path, trainer: L.Trainer, step: int
) -> dict[str, float]:
    """Run the configured ``metrics`` on the trained model; write ``<run_dir>/metrics.json``, append the
    final row of the run's metrics history and log ``eval/*`` at ``step``. Returns the metric values."""
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
