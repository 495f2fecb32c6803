"""Run a set of metrics over real and generated videos, with real statistics cached on disk.

Sources are iterables of batches ``{"video": uint8 (N, F, H, W, 3), "label"?: (N,), "caption"?: list[str]}``.
Each metric gets at most the number of clips its protocol wants; the evaluator reads as many as the most
demanding metric needs, and skips the real side entirely for metrics whose cached statistics exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from vidgen.metrics.base import VideoMetric
from vidgen.metrics.stats_cache import StatsCache
from vidgen.metrics.weights import WeightFile, check_weight_files

Batch = dict[str, Any]


def check_required_files(metrics: dict[str, VideoMetric]) -> list[WeightFile]:
    """Check every weight file of every metric; a ``MissingWeightsError`` lists every missing or wrong file
    of all of them at once (absolute paths, the metrics, the folders searched)."""
    files = [weight for metric in metrics.values() for weight in metric.required_files()]
    check_weight_files(files)
    return files


def _take(batches: Iterable[Batch], limit: int) -> Iterator[Batch]:
    """Yield batches until ``limit`` clips have been yielded (the last batch cut to fit)."""
    seen = 0
    for batch in batches:
        if seen >= limit:
            return
        n = min(len(batch["video"]), limit - seen)
        yield {k: (v[:n] if v is not None else None) for k, v in batch.items()}
        seen += n


def _feed(
    metrics: list[VideoMetric], batches: Iterable[Batch], side: str, wanted: dict[int, int]
) -> dict[int, int]:
    """Feed ``batches`` to each metric until it has the clips its protocol wants; returns clips fed per metric."""
    fed = {id(m): 0 for m in metrics}
    for batch in batches:
        for metric in metrics:
            room = wanted[id(metric)] - fed[id(metric)]
            if room <= 0:
                continue
            video = batch["video"][:room]
            labels = batch.get("label")
            captions = batch.get("caption")
            update = metric.update_real if side == "real" else metric.update_fake
            update(
                video,
                labels=labels[:room] if labels is not None else None,
                captions=list(captions[:room]) if captions is not None else None,
            )
            fed[id(metric)] += len(video)
        if all(fed[id(m)] >= wanted[id(m)] for m in metrics):
            break
    return fed


def evaluate(
    metrics: dict[str, VideoMetric],
    fake_batches: Iterable[Batch],
    real_batches: Iterable[Batch] | None,
    cache: StatsCache | None = None,
    dataset_key: dict[str, Any] | None = None,
    num_real: int | None = None,
    num_fake: int | None = None,
) -> dict[str, Any]:
    """Compute every metric; returns ``{"metrics": {key: value}, "clips": {...}, "cache": {...}}``.

    Args:
        metrics: name -> metric.
        fake_batches: generated clips (consumed once, up to the largest ``num_fake_wanted``).
        real_batches: real clips (consumed only for metrics whose real statistics are not cached).
        cache: on-disk cache of real statistics; ``dataset_key`` identifies the real data in it.
        num_real, num_fake: override every metric's protocol counts (e.g. for quick checks).
    """
    real_metrics = [m for m in metrics.values() if m.needs_real]
    cache_info: dict[str, str] = {}
    to_compute = []
    for metric in real_metrics:
        key = metric.real_cache_key() if cache is not None and dataset_key is not None else None
        if key is not None:
            key = {**key, "num_real": num_real or metric.num_real_wanted}
            path = cache.path_for(dataset_key, key)
            state = cache.load(path)
            if state is not None:
                metric.load_real_state(state)
                cache_info[metric.name] = f"hit {path}"
                continue
            cache_info[metric.name] = f"computed {path}"
        to_compute.append(metric)

    real_counts: dict[str, int] = {}
    if to_compute:
        if real_batches is None:
            names = ", ".join(m.name for m in to_compute)
            raise ValueError(f"metrics {names} need real videos: give a dataset or real_dir")
        wanted = {id(m): num_real or m.num_real_wanted for m in to_compute}
        fed = _feed(to_compute, _take(real_batches, max(wanted.values())), "real", wanted)
        real_counts = {m.name: fed[id(m)] for m in to_compute}
        for metric in to_compute:
            if cache is not None and dataset_key is not None and metric.real_cache_key() is not None:
                key = {**metric.real_cache_key(), "num_real": num_real or metric.num_real_wanted}
                cache.save(cache.path_for(dataset_key, key), metric.real_state())

    all_metrics = list(metrics.values())
    wanted_fake = {id(m): num_fake or m.num_fake_wanted for m in all_metrics}
    fed_fake = _feed(all_metrics, _take(fake_batches, max(wanted_fake.values())), "fake", wanted_fake)

    values: dict[str, float] = {}
    for metric in all_metrics:
        values.update({k: float(v) for k, v in metric.compute().items()})
    return {
        "metrics": values,
        "clips": {"real": real_counts, "fake": {m.name: fed_fake[id(m)] for m in all_metrics}},
        "cache": cache_info,
    }


def frames_to_uint8_batch(videos: torch.Tensor) -> torch.Tensor:
    """``(N, C, F, H, W)`` float in [-1, 1] -> ``(N, F, H, W, 3)`` uint8 (the metrics' input format)."""
    from vidgen.io.video import video_to_uint8

    return torch.stack([torch.as_tensor(video_to_uint8(v)) for v in videos])
