"""In-domain scores of long synthetic-style clips, such as videos extended block by block beyond a model's clip
length: whether the motion and the object stay consistent over the whole clip and across each join.

:class:`SyntheticLongClip` (``synthetic_long``) runs the structure analyser
(:class:`~vidgen.metrics.synthetic.structure.StructureAnalyzer`) on windows of ``window`` frames:

* ``window_motion_consistency`` / ``window_motion_residual_px``: over windows every ``window_stride`` frames
  along the whole clip (the analyser's motion models, a constant velocity with up to two wall bounces per axis
  or a circle, describe any ``window``-frame stretch of a real clip, while a whole long clip may bounce more
  often than they allow);
* ``boundary_motion_consistency`` / ``boundary_motion_residual_px``: over the windows centred on each block
  boundary of a block-wise extension: the first block has ``block_frames`` frames and every later block adds
  ``block_frames - context_frames`` new frames, so the boundaries are at frames ``block_frames + k * (block_frames
  - context_frames)``; a window ``[b - window // 2, b - window // 2 + window)`` straddles boundary ``b``. A join
  where the object jumps, changes its motion or its colour fails there even when every block is fine alone;
* ``colour_constancy``: per clip, the fraction of the frames with an object whose main object has the clip's
  most common palette colour (averaged over clips): an object that turns into another one across a join
  lowers it;
* ``object_presence``: fraction of frames with a plausible object.

Consistency entries count a window without a track as one failed track, as ``synthetic_structure`` does. Real
synthetic clips of any length score about 1 on every entry (``tests/metrics/test_long_clip_metrics.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.synthetic.metrics import structure_analyzer
from vidgen.metrics.synthetic.structure import StructureAnalyzer

__all__ = ["SyntheticLongClip", "block_boundaries"]


def block_boundaries(num_frames: int, block_frames: int, context_frames: int) -> list[int]:
    """First frame of every block after the first in a ``num_frames`` clip made block by block: the first
    block has ``block_frames`` frames, each later one ``block_frames - context_frames`` new ones."""
    if not 0 <= context_frames < block_frames:
        raise ValueError(
            f"context_frames must lie in [0, block_frames = {block_frames}), got {context_frames}"
        )
    step = block_frames - context_frames
    return list(range(block_frames, num_frames, step))


class _WindowScores:
    """Consistency tally over analysed windows."""

    def __init__(self) -> None:
        self.tracks = 0
        self.consistent = 0
        self.residuals: list[float] = []

    def add(self, analyzer: StructureAnalyzer, clip: np.ndarray) -> None:
        found = analyzer.analyse_clip(clip)
        self.tracks += max(1, len(found.residuals))
        self.consistent += sum(analyzer.consistent(r, found.resolution) for r in found.residuals)
        self.residuals.extend(found.residuals)

    def report(self, prefix: str) -> dict[str, float]:
        if not self.tracks:
            return {}
        return {
            f"{prefix}_motion_consistency": self.consistent / self.tracks,
            f"{prefix}_motion_residual_px": float(np.mean(self.residuals)) if self.residuals else math.nan,
        }


class SyntheticLongClip(VideoMetric):
    """Window, boundary and colour consistency of long generated clips (see the module docstring).

    Args:
        num_fake: generated clips the protocol uses.
        window: frames per analysed window (>= 3; e.g. the model's clip length).
        window_stride: frames between the starts of the whole-clip windows.
        block_frames: clip length of the model that made the clips block by block (None: no boundary
            entries).
        context_frames: frames of each block that overlap the previous ones (the extension's context).
        data: generator settings (``background``, ``colors``, ``object_size``, ``speed``, ``max_objects``,
            ``frame_stride``; see :class:`~vidgen.metrics.synthetic.SyntheticStructure`).
        foreground, colour_tolerance, motion_tolerance, track_fraction: the analyser's settings.
    """

    name = "synthetic_long"
    needs_real = False

    def __init__(
        self,
        num_fake: int = 128,
        window: int = 8,
        window_stride: int = 4,
        block_frames: int | None = None,
        context_frames: int = 0,
        data: Mapping[str, Any] | None = None,
        foreground: float = 0.5,
        colour_tolerance: float = 40.0,
        motion_tolerance: float = 0.02,
        track_fraction: float = 0.75,
    ) -> None:
        if int(window) < 3 or int(window_stride) < 1:
            raise ValueError(f"{self.name}: window must be >= 3 and window_stride >= 1")
        if block_frames is not None:
            block_boundaries(int(block_frames) + 1, int(block_frames), int(context_frames))  # validates
        self.num_fake = int(num_fake)
        self.window = int(window)
        self.window_stride = int(window_stride)
        self.block_frames = None if block_frames is None else int(block_frames)
        self.context_frames = int(context_frames)
        self.analyzer = structure_analyzer(
            data,
            foreground=foreground,
            colour_tolerance=colour_tolerance,
            motion_tolerance=motion_tolerance,
            track_fraction=track_fraction,
        )
        self._clips = 0
        self._frames = 0
        self._present = 0
        self._constancy: list[float] = []
        self._windows = _WindowScores()
        self._boundaries = _WindowScores()

    def windows(self, num_frames: int) -> list[int]:
        """Start frames of the whole-clip windows of a ``num_frames`` clip (the last one ends at its end)."""
        if num_frames < self.window:
            raise ValueError(
                f"{self.name}: clips of {num_frames} frames are shorter than window={self.window}"
            )
        starts = list(range(0, num_frames - self.window + 1, self.window_stride))
        if starts[-1] != num_frames - self.window:
            starts.append(num_frames - self.window)
        return starts

    def boundary_windows(self, num_frames: int) -> list[int]:
        """Start frames of the windows centred on each block boundary (clamped inside the clip)."""
        if self.block_frames is None:
            return []
        starts = []
        for boundary in block_boundaries(num_frames, self.block_frames, self.context_frames):
            starts.append(min(max(0, boundary - self.window // 2), num_frames - self.window))
        return starts

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """Real videos are not used (``needs_real`` is False)."""

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """``videos``: uint8 ``(N, F, H, W, 3)`` with ``F >= window``."""
        check_uint8_videos(videos, self.name)
        for clip in videos.cpu().numpy():
            frames = clip.shape[0]
            whole = self.analyzer.analyse_clip(clip)  # per-frame presence and main-object colour
            self._clips += 1
            self._frames += frames
            self._present += int(whole.present.sum())
            self._constancy.append(whole.colour_constancy())
            for start in self.windows(frames):
                self._windows.add(self.analyzer, clip[start : start + self.window])
            for start in self.boundary_windows(frames):
                self._boundaries.add(self.analyzer, clip[start : start + self.window])

    def compute(self) -> dict[str, float]:
        if self._clips == 0:
            raise ValueError(f"{self.name}: no generated videos seen")
        out = {
            f"{self.name}/object_presence": self._present / self._frames,
            f"{self.name}/colour_constancy": float(np.mean(self._constancy)),
        }
        out.update({f"{self.name}/{k}": v for k, v in self._windows.report("window").items()})
        out.update({f"{self.name}/{k}": v for k, v in self._boundaries.report("boundary").items()})
        return out
