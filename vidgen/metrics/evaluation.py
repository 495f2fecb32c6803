"""Evaluating a model with the configured ``metrics``: the library behind ``vidgen.evaluate``, the
end-of-training evaluation (``evaluation.at_end``) and the periodic evaluation during training.

:func:`build_metrics` instantiates the ``metrics`` config node, :func:`protocol_counts` says how many real and
generated clips the protocols want, :func:`dataset_key` identifies the real data in the statistics cache, and
:func:`evaluate_model` runs the whole evaluation of a trained module against its data module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.metrics.base import VideoMetric
from vidgen.metrics.clip_sources import (
    evaluation_captions,
    fake_from_checkpoint,
    fake_from_reconstructions,
    real_from_dataset,
)
from vidgen.metrics.evaluator import check_required_files, evaluate
from vidgen.metrics.stats_cache import StatsCache

__all__ = ["build_metrics", "dataset_key", "evaluate_model", "format_metrics_table", "protocol_counts"]

#: data settings that do not change the real clips an evaluation reads (``joint_image_frames`` only appends
#: images to training clips), so runs that differ in them share one cache entry
_CACHE_IGNORED_DATA_KEYS = frozenset(
    {
        "batch_size",
        "num_workers",
        "val_batch_size",
        "pin_memory",
        "drop_last",
        "_target_",
        "joint_image_frames",
        "cache",
    }
)


def build_metrics(
    node: DictConfig, device: torch.device, num_real: int | None = None, num_fake: int | None = None
) -> dict[str, VideoMetric]:
    """Instantiate every metric of the ``metrics`` node (name -> config with ``_target_``).

    ``num_real`` / ``num_fake`` override the protocol counts of every metric that has them (quick checks);
    ``device: auto`` becomes ``device``.
    """
    if not node:
        raise ConfigError("metrics", "no metrics chosen; e.g. metrics=[fvd,fid] or metrics=synthetic")
    metrics = {}
    for name, metric_cfg in node.items():
        if not hasattr(metric_cfg, "keys") or "_target_" not in metric_cfg:
            raise ConfigError(
                f"metrics.{name}",
                "is not a metric (no _target_): a key set for a metric that metrics=[...] did not choose?",
            )
        kwargs: dict[str, Any] = {}
        if "device" in metric_cfg and metric_cfg.device in (None, "auto"):
            kwargs["device"] = str(device)
        for key, value in (("num_real", num_real), ("num_fake", num_fake)):
            if value is not None and key in metric_cfg:
                kwargs[key] = int(value)
        metrics[str(name)] = instantiate_node(metric_cfg, **kwargs)
    return metrics


def protocol_counts(metrics: dict[str, VideoMetric]) -> tuple[int, int]:
    """Clips to read: the most any metric's protocol wants, real (0 if none needs real) and generated."""
    real = max([m.num_real_wanted for m in metrics.values() if m.needs_real] or [0])
    return real, max(m.num_fake_wanted for m in metrics.values())


def dataset_key(data_cfg: dict[str, Any] | None, real_dir: str | None) -> dict[str, Any]:
    """What identifies the real data in the statistics cache: the resolved ``real_dir`` when given, else the
    data config without the settings that do not change the clips (batch size, loader workers, ...)."""
    if real_dir:
        return {"real_dir": str(Path(real_dir).resolve())}
    return {k: v for k, v in (data_cfg or {}).items() if k not in _CACHE_IGNORED_DATA_KEYS}


def evaluate_model(
    module: Any,
    datamodule: Any,
    data_cfg: dict[str, Any],
    metrics: dict[str, VideoMetric],
    cache_dir: str | Path,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a trained module against its datamodule's evaluation clips (used at the end of training).

    A generative module is scored on clips it generates; an autoencoder (``module.is_reconstruction_model``,
    CMD's stage 1) on its reconstructions of the evaluation clips (e.g. the reconstruction FVD).

    Returns the evaluator's result ``{"metrics": {name: value}, "clips": ..., "cache": ...}``.
    """
    check_required_files(metrics)
    need_real, need_fake = protocol_counts(metrics)
    real = real_from_dataset(datamodule.evaluation_dataset(need_real), batch_size) if need_real else None
    if getattr(module, "is_reconstruction_model", False):
        fake = fake_from_reconstructions(module, datamodule.evaluation_dataset(need_fake), batch_size)
    else:
        captions = evaluation_captions(module, datamodule, need_fake)
        fake = fake_from_checkpoint(module, need_fake, batch_size, seed, None, None, captions)
    return evaluate(
        metrics,
        fake,
        real,
        cache=StatsCache(Path(cache_dir) / "real_stats"),
        dataset_key=dataset_key(data_cfg, None),
    )


def format_metrics_table(values: dict[str, float]) -> str:
    """A Markdown table of metric values, one row per metric."""
    width = max(len(k) for k in values) if values else 6
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v:.4f} |" for k, v in values.items()]
    return "\n".join(lines)
