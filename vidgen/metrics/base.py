"""The interface every evaluation metric implements.

Videos enter metrics only as ``uint8`` tensors ``(N, F, H, W, 3)`` in ``[0, 255]`` (the file-boundary format
of the framework; ``vidgen.io.video.video_to_uint8`` converts generated ``[-1, 1]`` clips). Each metric
converts them for its network in one place (range, dtype, resize, frame count) and rejects anything else, so a
wrong input range cannot pass silently.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vidgen.metrics.weights import WeightFile


def check_uint8_videos(videos: torch.Tensor, metric: str, min_frames: int = 1) -> torch.Tensor:
    """Validate ``(N, F, H, W, 3)`` uint8 videos; raise ``ValueError`` naming the metric otherwise."""
    if not isinstance(videos, torch.Tensor) or videos.dtype != torch.uint8:
        kind = videos.dtype if isinstance(videos, torch.Tensor) else type(videos).__name__
        raise ValueError(
            f"{metric}: videos must be uint8 tensors (N, F, H, W, 3) in [0, 255], got {kind}; convert float "
            "[-1, 1] clips with vidgen.io.video.video_to_uint8"
        )
    if videos.dim() != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{metric}: videos must have shape (N, F, H, W, 3), got {tuple(videos.shape)}")
    if videos.shape[1] < min_frames:
        raise ValueError(f"{metric}: needs at least {min_frames} frames per clip, got {videos.shape[1]}")
    return videos


class VideoMetric(ABC):
    """A metric comparing generated videos with real ones (or scoring generated videos alone).

    Lifecycle: :meth:`required_files` (checked before any sampling), then :meth:`update_real` /
    :meth:`update_fake` in batches, then :meth:`compute`. Metrics with a real reference that is expensive to
    compute expose it through :meth:`real_state` / :meth:`load_real_state` so the evaluator can cache it on
    disk under :meth:`real_cache_key`.
    """

    #: short name used in config and result keys (e.g. ``fvd``)
    name: str = "metric"
    #: whether the metric needs real videos at all
    needs_real: bool = True
    #: real clips the protocol uses (set by the constructor of a metric that needs real videos)
    num_real: int = 0
    #: generated clips the protocol uses (set by every metric's constructor)
    num_fake: int = 0

    def required_files(self) -> list[WeightFile]:
        """Weight files this metric needs (empty when it needs none)."""
        return []

    def real_cache_key(self) -> dict[str, Any] | None:
        """What identifies the real statistics besides the dataset: protocol + feature network. ``None``
        when the real side is not cacheable."""
        return None

    def real_state(self) -> dict[str, np.ndarray]:
        """Arrays that summarise the real videos seen so far (for the on-disk cache)."""
        return {}

    def load_real_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the real-video summary from the cache instead of reading real videos."""
        raise NotImplementedError(f"{self.name} does not cache real statistics")

    @property
    def num_real_wanted(self) -> int:
        """How many real clips the protocol uses: ``num_real``, 0 when ``needs_real`` is False."""
        return self.num_real if self.needs_real else 0

    @property
    def num_fake_wanted(self) -> int:
        """How many generated clips the protocol uses: ``num_fake``."""
        return self.num_fake

    @abstractmethod
    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """Add real videos ``(N, F, H, W, 3)`` uint8."""

    @abstractmethod
    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """Add generated videos ``(N, F, H, W, 3)`` uint8 (with the labels / captions they were made for)."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric's values, keyed ``<name>`` or ``<name>/<part>``."""
