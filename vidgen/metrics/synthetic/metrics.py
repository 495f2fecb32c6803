"""In-domain metrics for the built-in synthetic data; they need no downloaded weights.

* :class:`SyntheticFVD` (``synthetic_fvd``): Frechet distance between penultimate-layer features of the
  synthetic classifier (:mod:`vidgen.metrics.synthetic.classifier`, trained and cached by vidgen) for real and
  generated clips. Lower is better.
* :class:`SyntheticClassAccuracy` (``class_accuracy``): fraction of generated clips the classifier assigns to
  the class they were generated for (class-conditional models only). Higher is better.
* :class:`SyntheticStructure` (``synthetic_structure``): object presence, palette colours and motion
  consistency checked against the generator's known structure, no learned weights
  (:mod:`vidgen.metrics.synthetic.structure`).

All take videos as uint8 ``(N, F, H, W, 3)`` and raise ``ValueError`` for anything else. The classifier metrics
need clips of the classifier's frame count and resolution: ``num_frames`` / ``resolution`` (``None``: taken
from the first batch seen; the real statistics are only cacheable when both are set). ``data`` holds the
generator settings the clips were made with (the keys of :data:`~vidgen.metrics.synthetic.classifier.DATA_KEYS`:
``seed``, ``object_size``, ``speed``, ``background``, ``max_objects``, ...; defaults are the dataset's).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.frechet import FeatureAccumulator, frechet_distance
from vidgen.metrics.synthetic.classifier import (
    SyntheticVideoClassifier,
    classifier_settings,
    generator_kwargs,
    load_or_train_classifier,
)
from vidgen.metrics.synthetic.structure import StructureAnalyzer

__all__ = ["SyntheticClassAccuracy", "SyntheticFVD", "SyntheticStructure", "structure_analyzer"]


def _weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names and float32 bytes (identifies the exact weights)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


class _ClassifierMetric(VideoMetric):
    """Shared plumbing: the cached classifier, loaded (or trained) on first use."""

    def __init__(
        self,
        num_frames: int | None = None,
        resolution: int | None = None,
        cache_dir: str | Path | None = None,
        device: str | torch.device | None = "cpu",
        seed: int = 0,
        data: Mapping[str, Any] | None = None,
        classifier: Mapping[str, Any] | None = None,
        batch_size: int = 128,
    ) -> None:
        self.num_frames = None if num_frames is None else int(num_frames)
        self.resolution = None if resolution is None else int(resolution)
        self.cache_dir = cache_dir
        self.device = device
        self.seed = int(seed)
        self.data = dict(data or {})
        self.classifier_overrides = dict(classifier or {})
        self.batch_size = int(batch_size)
        self._model: SyntheticVideoClassifier | None = None
        self.classifier_report: dict[str, Any] | None = None
        if self.num_frames is not None and self.resolution is not None:  # validate the settings early
            classifier_settings(
                self.num_frames, self.resolution, self.seed, self.data, **self.classifier_overrides
            )

    def _classifier(self, videos: torch.Tensor | None = None) -> SyntheticVideoClassifier:
        if self._model is None:
            if videos is not None:
                check_uint8_videos(videos, self.name)
                self.num_frames = self.num_frames or int(videos.shape[1])
                self.resolution = self.resolution or int(videos.shape[2])
            if self.num_frames is None or self.resolution is None:
                raise ValueError(f"{self.name}: set num_frames and resolution (or feed videos first)")
            self._model, self.classifier_report = load_or_train_classifier(
                self.cache_dir,
                self.num_frames,
                self.resolution,
                seed=self.seed,
                data=self.data,
                device=self.device,
                **self.classifier_overrides,
            )
        return self._model

    def _embed(self, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self._classifier(videos)
        return model.embed(videos, batch_size=self.batch_size, metric=self.name)


class SyntheticFVD(_ClassifierMetric):
    """Frechet distance between the synthetic classifier's penultimate features of real and generated clips.

    Real clips are synthetic clips of the split the evaluation compares with (usually ``val``; the classifier
    is trained on ``train``). Statistics use the biased covariance (as :mod:`vidgen.metrics.frechet`'s FVD).
    Values are only comparable for the same classifier (``num_frames``, ``resolution``, ``data``, ``seed``,
    ``classifier`` settings), ``num_real`` and ``num_fake``.

    Args:
        num_real: real clips the protocol uses (default 512).
        num_fake: generated clips the protocol uses (default 512).
        cache_dir: where the classifier is cached (``None``: ``$VIDGEN_CACHE`` or ``~/.cache/vidgen``).
        num_frames, resolution: the clips' shape (``None``: from the first batch; set both to cache real
            statistics).
        device: where the classifier runs (``"auto"``: CUDA when available).
        seed: the classifier's training seed.
        data: generator settings of the clips (see the module docstring).
        classifier: overrides of the classifier's training settings (``steps``, ``width``, ...).
        batch_size: clips per classifier forward pass.
    """

    name = "synthetic_fvd"
    needs_real = True

    def __init__(self, num_real: int = 512, num_fake: int = 512, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_real = int(num_real)
        self.num_fake = int(num_fake)
        self._real: FeatureAccumulator | None = None
        self._fake: FeatureAccumulator | None = None

    def real_cache_key(self) -> dict[str, Any] | None:
        """Protocol + the classifier's settings and a digest of its weights (loads / trains it); ``None``
        while ``num_frames`` / ``resolution`` are unknown."""
        if self.num_frames is None or self.resolution is None:
            return None
        model = self._classifier()
        return {
            "metric": self.name,
            "features": "synthetic classifier penultimate layer",
            "covariance": "biased",
            "classifier": classifier_settings(
                self.num_frames, self.resolution, self.seed, self.data, **self.classifier_overrides
            ),
            "weights_sha256": _weights_digest(model),
        }

    def _accumulate(self, which: str, videos: torch.Tensor) -> None:
        features, _ = self._embed(videos)
        accumulator = getattr(self, which)
        if accumulator is None:
            accumulator = FeatureAccumulator(features.shape[1])
            setattr(self, which, accumulator)
        accumulator.update(features)

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._accumulate("_real", videos)

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._accumulate("_fake", videos)

    def real_state(self) -> dict[str, np.ndarray]:
        if self._real is None:
            raise ValueError(f"{self.name}: no real videos seen yet")
        return self._real.state()

    def load_real_state(self, state: dict[str, np.ndarray]) -> None:
        self._real = FeatureAccumulator.from_state(state)

    def compute(self) -> dict[str, float]:
        if self._real is None or self._fake is None:
            raise ValueError(
                f"{self.name}: needs real and generated videos (got real: "
                f"{self._real is not None}, generated: {self._fake is not None})"
            )
        return {self.name: frechet_distance(self._real.stats(), self._fake.stats())}


class SyntheticClassAccuracy(_ClassifierMetric):
    """Fraction of generated clips that the synthetic classifier assigns to the class they were made for.

    ``update_fake`` needs ``labels`` (the classes the clips were generated for): without them it raises
    ``ValueError`` (the metric only makes sense for class-conditional models). Reports ``class_accuracy``
    and the shape-only / motion-only parts (``class_accuracy/shape``, ``class_accuracy/motion``); chance is
    ``1 / num_classes`` (1/21 with the default classes).

    Args: as :class:`SyntheticFVD`, without ``num_real``.
    """

    name = "class_accuracy"
    needs_real = False

    def __init__(self, num_fake: int = 512, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_fake = int(num_fake)
        self._motions = len(SyntheticVideoDataset(num_clips=1, **generator_kwargs(self.data)).motions)
        self._seen = 0
        self._correct = 0
        self._shape_correct = 0
        self._motion_correct = 0

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """Real videos are not used (``needs_real`` is False)."""

    def update_fake(
        self,
        videos: torch.Tensor,
        labels: torch.Tensor | Sequence[int] | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        check_uint8_videos(videos, self.name)
        if labels is None:
            raise ValueError(
                f"{self.name}: needs the class labels the clips were generated for (a class-conditional "
                "model); drop this metric for unconditional models"
            )
        target = torch.as_tensor(labels).long().reshape(-1).cpu()
        if target.numel() != videos.shape[0]:
            raise ValueError(f"{self.name}: got {target.numel()} labels for {videos.shape[0]} videos")
        _, logits = self._embed(videos)
        classes = logits.shape[1]
        if target.numel() and (target.min() < 0 or target.max() >= classes):
            raise ValueError(f"{self.name}: labels must be in [0, {classes}), got {target.tolist()}")
        predicted = logits.argmax(dim=1)
        self._seen += int(target.numel())
        self._correct += int((predicted == target).sum())
        self._shape_correct += int((predicted // self._motions == target // self._motions).sum())
        self._motion_correct += int((predicted % self._motions == target % self._motions).sum())

    def compute(self) -> dict[str, float]:
        if self._seen == 0:
            raise ValueError(f"{self.name}: no generated videos seen")
        return {
            self.name: self._correct / self._seen,
            f"{self.name}/shape": self._shape_correct / self._seen,
            f"{self.name}/motion": self._motion_correct / self._seen,
        }


def structure_analyzer(data: Mapping[str, Any] | None = None, **settings: float) -> StructureAnalyzer:
    """The structure analyser for clips of the synthetic generator with settings ``data`` (background, colours,
    object sizes, speeds, objects per clip, frame stride); ``settings`` are its ``foreground``,
    ``colour_tolerance``, ``motion_tolerance`` and ``track_fraction``."""
    generator = SyntheticVideoDataset(num_clips=1, **generator_kwargs(data))
    return StructureAnalyzer(
        background=generator.background,
        colors=generator.colors,
        object_size=generator.object_size,
        # a rendered frame is frame_stride frames of the underlying motion: per rendered frame the objects
        # move frame_stride times as far (and circles turn that much faster)
        speed=tuple(generator.frame_stride * s for s in generator.speed),
        max_objects=generator.max_objects,
        **settings,
    )


class SyntheticStructure(VideoMetric):
    """Object presence, palette colours and motion consistency of generated clips, from the generator's known
    structure (no learned weights). See :mod:`vidgen.metrics.synthetic.structure` for the exact rules.

    Reports (``synthetic_structure/...``):

    * ``object_presence``: fraction of frames with a plausible object (count and sizes of foreground blobs
      fit the generator). Frame order does not matter.
    * ``colour_match``: fraction of the objects found (all frames) whose colour is within tolerance of a
      palette colour; NaN when no object was found. Frame order does not matter.
    * ``colour_constancy``: per clip, the fraction of the frames with an object of a palette colour whose main
      (largest) object has the clip's most common colour, averaged over clips (a clip without one scores 0):
      ``colour_match`` scores each frame alone, so an object that turns from cyan to white part-way keeps a
      perfect ``colour_match`` and lowers this. With several objects per clip the main object can switch
      between two of about the same size, so real clips then score below 1 (0.965 with two objects, 0.94
      with three). Frame order does not matter.
    * ``motion_residual_px``: mean best-fit residual (RMS, pixels) of the object tracks over the motion kinds
      of the generator (bouncing constant velocity, circle, static); lower is better; NaN when no clip has a
      track. Shuffled frames raise it.
    * ``motion_consistency``: fraction of tracks whose best residual is within ``motion_tolerance x R``
      (clips without a track count as one failed track). Shuffled frames lower it.
    * ``trackable``: fraction of clips with at least one track (object found in >= ``track_fraction`` of
      the frames).

    The motion entries need clips of >= 3 frames and are left out otherwise. Real synthetic clips score
    presence 1, colour 1, colour constancy 1 (one object per clip), consistency 1 and residuals of a few
    hundredths of a pixel.

    Args:
        num_fake: generated clips the protocol uses (default 512).
        data: generator settings (the keys of the classifier metrics' ``data``; this metric uses
            ``background``, ``colors``, ``object_size``, ``speed``, ``max_objects`` and ``frame_stride``).
        foreground, colour_tolerance, motion_tolerance, track_fraction: see
            :class:`~vidgen.metrics.synthetic.structure.StructureAnalyzer`.
    """

    name = "synthetic_structure"
    needs_real = False

    def __init__(
        self,
        num_fake: int = 512,
        data: Mapping[str, Any] | None = None,
        foreground: float = 0.5,
        colour_tolerance: float = 40.0,
        motion_tolerance: float = 0.02,
        track_fraction: float = 0.75,
    ) -> None:
        self.num_fake = int(num_fake)
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
        self._objects = 0
        self._matched = 0
        self._motion_clips = 0
        self._trackable = 0
        self._tracks = 0
        self._consistent = 0
        self._residuals: list[float] = []
        self._constancy: list[float] = []

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        """Real videos are not used (``needs_real`` is False)."""

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        check_uint8_videos(videos, self.name)
        for clip in videos.cpu().numpy():
            found = self.analyzer.analyse_clip(clip)
            self._clips += 1
            self._frames += int(found.present.size)
            self._present += int(found.present.sum())
            self._objects += len(found.colour_matches)
            self._matched += int(sum(found.colour_matches))
            self._constancy.append(found.colour_constancy())
            if found.present.size < 3:
                continue
            self._motion_clips += 1
            self._trackable += bool(found.residuals)
            self._tracks += max(1, len(found.residuals))
            self._consistent += sum(self.analyzer.consistent(r, found.resolution) for r in found.residuals)
            self._residuals.extend(found.residuals)

    def compute(self) -> dict[str, float]:
        if self._clips == 0:
            raise ValueError(f"{self.name}: no generated videos seen")
        out = {
            f"{self.name}/object_presence": self._present / self._frames,
            f"{self.name}/colour_match": self._matched / self._objects if self._objects else math.nan,
            f"{self.name}/colour_constancy": float(np.mean(self._constancy)),
        }
        if self._motion_clips:
            out[f"{self.name}/motion_residual_px"] = (
                float(np.mean(self._residuals)) if self._residuals else math.nan
            )
            out[f"{self.name}/motion_consistency"] = self._consistent / self._tracks
            out[f"{self.name}/trackable"] = self._trackable / self._motion_clips
        return out
