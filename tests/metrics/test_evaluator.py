"""The evaluator: protocol counts, the real-statistics cache, weight checks before sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.evaluator import check_required_files, evaluate, frames_to_uint8_batch
from vidgen.metrics.stats_cache import StatsCache
from vidgen.metrics.weights import MissingWeightsError, WeightFile


class MeanGap(VideoMetric):
    """|mean pixel of fake - mean pixel of real|, with a cacheable real side (for testing the evaluator)."""

    name = "mean_gap"

    def __init__(self, num_real: int, num_fake: int, weights: Path | None = None) -> None:
        self.num_real, self.num_fake, self.weights = num_real, num_fake, weights
        self.real: list[float] = []
        self.fake: list[float] = []

    def required_files(self) -> list[WeightFile]:
        return [WeightFile(self.weights, self.name, "a test file")] if self.weights else []

    @property
    def num_real_wanted(self) -> int:
        return self.num_real

    @property
    def num_fake_wanted(self) -> int:
        return self.num_fake

    def real_cache_key(self) -> dict:
        return {"metric": self.name}

    def real_state(self) -> dict[str, np.ndarray]:
        return {"real": np.array(self.real)}

    def load_real_state(self, state: dict[str, np.ndarray]) -> None:
        self.real = state["real"].tolist()

    def update_real(self, videos, labels=None, captions=None) -> None:
        self.real += check_uint8_videos(videos, self.name).float().mean(dim=(1, 2, 3, 4)).tolist()

    def update_fake(self, videos, labels=None, captions=None) -> None:
        self.fake += check_uint8_videos(videos, self.name).float().mean(dim=(1, 2, 3, 4)).tolist()

    def compute(self) -> dict[str, float]:
        return {self.name: abs(np.mean(self.fake) - np.mean(self.real)), "mean_gap/n_real": len(self.real)}


def _batches(value: int, n: int, batch: int = 4):
    for start in range(0, n, batch):
        size = min(batch, n - start)
        yield {"video": torch.full((size, 2, 4, 4, 3), value, dtype=torch.uint8)}


def test_protocol_counts_and_the_real_cache(tmp_path: Path) -> None:
    cache = StatsCache(tmp_path / "cache")
    key = {"name": "toy"}
    result = evaluate({"g": MeanGap(6, 5)}, _batches(10, 100), _batches(4, 100), cache=cache, dataset_key=key)
    assert result["metrics"]["mean_gap"] == 6.0 and result["metrics"]["mean_gap/n_real"] == 6
    assert result["clips"] == {"real": {"mean_gap": 6}, "fake": {"mean_gap": 5}}

    def exploding():
        raise AssertionError("real videos were read despite the cache")
        yield

    again = evaluate({"g": MeanGap(6, 5)}, _batches(10, 100), exploding(), cache=cache, dataset_key=key)
    assert again["metrics"]["mean_gap"] == 6.0 and again["cache"]["mean_gap"].startswith("hit")
    # another protocol (number of real clips) is another cache entry
    other = evaluate({"g": MeanGap(3, 5)}, _batches(10, 100), _batches(7, 100), cache=cache, dataset_key=key)
    assert other["metrics"]["mean_gap"] == 3.0 and other["cache"]["mean_gap"].startswith("computed")


def test_missing_weights_fail_before_anything_runs(tmp_path: Path) -> None:
    metrics = {"g": MeanGap(2, 2, weights=tmp_path / "detector.pt")}
    with pytest.raises(MissingWeightsError, match=r"mean_gap.*detector\.pt.*a test file"):
        check_required_files(metrics)


def test_float_videos_are_rejected_and_conversion_is_explicit() -> None:
    with pytest.raises(ValueError, match="uint8"):
        MeanGap(1, 1).update_fake(torch.zeros(1, 2, 4, 4, 3))
    videos = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 2)
    converted = frames_to_uint8_batch(videos)
    assert converted.shape == (1, 2, 2, 2, 3) and converted.dtype == torch.uint8
    assert converted[0, 0, 0, 0].tolist() == [0, 128, 255]
