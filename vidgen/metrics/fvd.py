"""Frechet Video Distance, StyleGAN-V protocol (Skorokhodov et al., 2022; Unterthiner et al., 2018).

Features: the Kinetics-400 I3D's 400 class logits (before the softmax) of each 16-frame clip, averaged over
time. Statistics: float64 mean and biased covariance (divide by ``N``) of 2048 real and 2048 generated clips.
Distance: :func:`vidgen.metrics.frechet.frechet_distance` (``scipy.linalg.sqrtm``).

Two interchangeable feature networks (``detector``):

``torchscript`` (default, the StyleGAN-V detector)
    ``i3d_torchscript.pt``: StyleGAN-V's TorchScript export of the TF-Hub I3D (``deepmind/i3d-kinetics-400``,
    the network of the original TensorFlow FVD; 51,235,320 bytes, sha256 ``bec6519f...60a5e2``). StyleGAN-V
    (``src/metrics/frechet_video_distance.py`` + ``metric_utils.py``) calls it as::

        features = detector(videos, rescale=True, resize=True, return_features=True)

    with ``videos`` a uint8 tensor ``(N, 3, T, H, W)`` in ``[0, 255]`` (frames permuted from ``(N, T, C, H,
    W)``; generator output is converted with ``(x * 127.5 + 128).clamp(0, 255).to(uint8)`` first), and gets
    ``(N, 400)`` float features. ``rescale=True`` makes the module map ``[0, 255]`` to ``[-1, 1]``
    (``x / 255 * 2 - 1``, per its author); ``resize=True`` makes it resize the frames to 224x224 itself;
    ``return_features=True`` returns the logits before the softmax. The clips are passed at their own
    resolution and frame count. This module calls it exactly so (uint8 in, same layout, same flags), which is
    why ``resolution`` must stay 224 for this detector: the resize is the detector's.

``pytorch``
    ``i3d_pretrained_400.pt``: a state dict for :class:`vidgen.metrics.i3d.InceptionI3d` in the
    piergiaj/pytorch-i3d layout (the file VideoGPT / TATS use). Its weights come from DeepMind's I3D release,
    which StyleGAN-V notes differs from the TF-Hub module, so FVDs from the two detectors are not
    interchangeable: report which one was used. Input conversion happens in :func:`i3d_input` only.

Videos enter as uint8 ``(N, F, H, W, 3)`` (``check_uint8_videos``), with ``F >= num_frames >= 10``; longer
clips are cut to their first ``num_frames`` frames. Real and generated clips must be sampled with the same
frame stride (the data configuration's business). Clips beyond ``num_real`` / ``num_fake`` are ignored, as in
StyleGAN-V's ``max_items``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.frechet import FeatureAccumulator, frechet_distance
from vidgen.metrics.i3d import load_i3d
from vidgen.metrics.weights import WeightFile, sha256_of

__all__ = [
    "DEFAULT_WEIGHTS",
    "FVD",
    "FVD_MIN_FRAMES",
    "STYLEGAN_V_I3D_SHA256",
    "STYLEGAN_V_I3D_SIZE",
    "i3d_input",
]

#: StyleGAN-V's ``i3d_torchscript.pt``
STYLEGAN_V_I3D_SHA256 = "bec6519f66ea534e953026b4ae2c65553c17bf105611c746d904657e5860a5e2"
STYLEGAN_V_I3D_SIZE = 51_235_320
#: default weight file names, looked up as given or under ``$VIDGEN_WEIGHTS``
DEFAULT_WEIGHTS = {"torchscript": "i3d_torchscript.pt", "pytorch": "i3d_pretrained_400.pt"}
#: fewest frames per clip FVD accepts (the I3D needs >= 10 in the reference protocol)
FVD_MIN_FRAMES = 10
#: the TorchScript detector resizes to this size itself
DETECTOR_RESOLUTION = 224
#: bump when feature extraction changes in a way that invalidates cached real statistics
CACHE_VERSION = 1

_DESCRIPTIONS = {
    "torchscript": (
        "StyleGAN-V's Kinetics-400 I3D TorchScript detector i3d_torchscript.pt (TF-Hub i3d-kinetics-400 port, "
        f"{STYLEGAN_V_I3D_SIZE:,} bytes, sha256 {STYLEGAN_V_I3D_SHA256}; distributed with StyleGAN-V). Use a "
        "different TorchScript export only knowingly, with verify_sha256=false"
    ),
    "pytorch": (
        "Kinetics-400 Inception-I3D state dict i3d_pretrained_400.pt in the piergiaj/pytorch-i3d layout "
        "(as used by VideoGPT / TATS), loaded into vidgen.metrics.i3d.InceptionI3d"
    ),
}


def i3d_input(videos: torch.Tensor, resolution: int = 224) -> torch.Tensor:
    """The PyTorch I3D's input: uint8 ``(N, T, H, W, 3)`` -> float32 ``(N, 3, T, resolution, resolution)``.

    The one place where values and size change: ``x / 255 * 2 - 1`` maps ``[0, 255]`` to ``[-1, 1]`` (as the
    TF FVD and StyleGAN-V's detector do), then every frame is resized to ``resolution`` x ``resolution``
    (aspect ratio not kept, like the TF FVD's ``resize_bilinear`` to 224x224) with bilinear interpolation,
    ``align_corners=False`` and antialias off (plain bilinear sampling, also when shrinking). Frames already
    at that size are left alone.
    """
    if videos.dtype != torch.uint8 or videos.dim() != 5 or videos.shape[-1] != 3:
        raise ValueError(f"i3d_input expects uint8 (N, T, H, W, 3), got {videos.dtype} {tuple(videos.shape)}")
    n, t, h, w, c = videos.shape
    frames = videos.reshape(n * t, h, w, c).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
    if (h, w) != (resolution, resolution):
        frames = F.interpolate(
            frames, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=False
        )
    return frames.reshape(n, t, c, resolution, resolution).permute(0, 2, 1, 3, 4).contiguous()


class FVD(VideoMetric):
    """Frechet Video Distance between real and generated clips (StyleGAN-V protocol by default).

    Args (config keys):
        detector: ``"torchscript"`` (StyleGAN-V's ``i3d_torchscript.pt``) or ``"pytorch"`` (an
            ``i3d_pretrained_400.pt`` state dict for vidgen's I3D).
        weights: path of the weight file; ``None`` means the detector's default file name
            (``i3d_torchscript.pt`` / ``i3d_pretrained_400.pt``), taken as given or under ``$VIDGEN_WEIGHTS``.
        num_real: real clips in the statistics (protocol: 2048).
        num_fake: generated clips in the statistics (protocol: 2048).
        num_frames: frames per clip fed to the I3D (protocol: 16; at least 10).
        resolution: frame size fed to the PyTorch I3D (protocol: 224). The TorchScript detector resizes to 224
            itself, so it only accepts 224 here.
        batch_size: clips per network call.
        unbiased_cov: divide the covariance by ``N - 1`` instead of ``N`` (protocol: ``False``).
        device: where the network runs.
        verify_sha256: check the TorchScript file's size and sha256 against StyleGAN-V's before using it.
    """

    name = "fvd"
    needs_real = True

    def __init__(
        self,
        detector: str = "torchscript",
        weights: str | Path | None = None,
        num_real: int = 2048,
        num_fake: int = 2048,
        num_frames: int = 16,
        resolution: int = 224,
        batch_size: int = 16,
        unbiased_cov: bool = False,
        device: str = "cpu",
        verify_sha256: bool = True,
    ) -> None:
        if detector not in DEFAULT_WEIGHTS:
            raise ValueError(f"fvd: detector must be one of {sorted(DEFAULT_WEIGHTS)}, got {detector!r}")
        if num_frames < FVD_MIN_FRAMES:
            raise ValueError(f"fvd: num_frames must be at least {FVD_MIN_FRAMES} (I3D), got {num_frames}")
        if num_real < 2 or num_fake < 2:
            raise ValueError(f"fvd: num_real and num_fake must be at least 2, got {num_real} and {num_fake}")
        if batch_size < 1:
            raise ValueError(f"fvd: batch_size must be positive, got {batch_size}")
        if resolution < 1:
            raise ValueError(f"fvd: resolution must be positive, got {resolution}")
        if detector == "torchscript" and resolution != DETECTOR_RESOLUTION:
            raise ValueError(
                f"fvd: the TorchScript detector resizes frames to {DETECTOR_RESOLUTION} itself; resolution="
                f"{resolution} only applies to detector=pytorch"
            )
        self.detector = detector
        self.weights = Path(weights) if weights else Path(DEFAULT_WEIGHTS[detector])
        self.num_real = int(num_real)
        self.num_fake = int(num_fake)
        self.num_frames = int(num_frames)
        self.resolution = int(resolution)
        self.batch_size = int(batch_size)
        self.unbiased_cov = bool(unbiased_cov)
        self.device = torch.device(device)
        self.verify_sha256 = bool(verify_sha256)
        self._extract: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._weights_sha256: str | None = None
        self._real: FeatureAccumulator | None = None
        self._fake: FeatureAccumulator | None = None

    # ----------------------------------------------------------------------------------------------- files

    def weight_file(self) -> WeightFile:
        """The detector's weight file; the TorchScript one carries StyleGAN-V's size and sha256 when verified."""
        known = self.detector == "torchscript" and self.verify_sha256
        return WeightFile(
            path=self.weights,
            metric=self.name,
            description=_DESCRIPTIONS[self.detector],
            sha256=STYLEGAN_V_I3D_SHA256 if known else None,
            size=STYLEGAN_V_I3D_SIZE if known else None,
        )

    def required_files(self) -> list[WeightFile]:
        return [self.weight_file()]

    def _weights_digest(self) -> str:
        if self._weights_sha256 is None:
            file = self.weight_file()
            path = file.check(verify_hash=self.verify_sha256)
            self._weights_sha256 = file.sha256 if file.sha256 is not None else sha256_of(path)
        return self._weights_sha256

    # ------------------------------------------------------------------------------------------- network

    def _extractor(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Load the network on first use (checking the file) and return ``uint8 clips -> (N, D) features``."""
        if self._extract is not None:
            return self._extract
        file = self.weight_file()
        path = file.check(verify_hash=self.verify_sha256)
        if file.sha256 is not None:
            self._weights_sha256 = file.sha256
        if self.detector == "torchscript":
            # TorchScript is deprecated in PyTorch, but it is the form StyleGAN-V's detector ships in.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*torch\.jit", category=FutureWarning)
                network = torch.jit.load(str(path), map_location=self.device).eval()

            def extract(clips: torch.Tensor) -> torch.Tensor:
                # StyleGAN-V's call: uint8 (N, 3, T, H, W) in [0, 255]; the module rescales and resizes.
                layout = clips.permute(0, 4, 1, 2, 3).contiguous()
                return network(layout, rescale=True, resize=True, return_features=True)

        else:
            model = load_i3d(path, device=self.device)

            def extract(clips: torch.Tensor) -> torch.Tensor:
                return model.features(i3d_input(clips, self.resolution))

        self._extract = extract
        return extract

    @torch.no_grad()
    def _features(self, videos: torch.Tensor) -> torch.Tensor:
        extract = self._extractor()
        outputs = []
        for start in range(0, videos.shape[0], self.batch_size):
            clips = videos[start : start + self.batch_size].to(self.device)
            features = extract(clips)
            if (
                not isinstance(features, torch.Tensor)
                or features.dim() != 2
                or features.shape[0] != len(clips)
            ):
                shape = (
                    tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
                )
                raise ValueError(
                    f"fvd: the {self.detector} detector returned {shape}, expected ({len(clips)}, D)"
                )
            outputs.append(features.double().cpu())
        return torch.cat(outputs)

    # ----------------------------------------------------------------------------------------- updates

    def _clips(self, videos: torch.Tensor) -> torch.Tensor:
        videos = check_uint8_videos(videos, self.name, min_frames=FVD_MIN_FRAMES)
        if videos.shape[1] < self.num_frames:
            raise ValueError(
                f"{self.name}: clips have {videos.shape[1]} frames, the protocol uses num_frames={self.num_frames}"
            )
        return videos[:, : self.num_frames]

    def _add(
        self, accumulator: FeatureAccumulator | None, videos: torch.Tensor, wanted: int
    ) -> FeatureAccumulator | None:
        clips = self._clips(videos)
        seen = accumulator.num if accumulator is not None else 0
        clips = clips[: max(wanted - seen, 0)]
        if len(clips) == 0:
            return accumulator
        features = self._features(clips)
        if accumulator is None:
            accumulator = FeatureAccumulator(features.shape[1])
        accumulator.update(features)
        return accumulator

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._real = self._add(self._real, videos, self.num_real)

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._fake = self._add(self._fake, videos, self.num_fake)

    @property
    def num_real_seen(self) -> int:
        return self._real.num if self._real is not None else 0

    @property
    def num_fake_seen(self) -> int:
        return self._fake.num if self._fake is not None else 0

    # -------------------------------------------------------------------------------------------- cache

    def real_cache_key(self) -> dict[str, Any]:
        """Protocol + feature network: everything besides the dataset that determines the real statistics."""
        return {
            "metric": self.name,
            "cache_version": CACHE_VERSION,
            "num_real": self.num_real,
            "num_frames": self.num_frames,
            "resolution": DETECTOR_RESOLUTION if self.detector == "torchscript" else self.resolution,
            "detector": self.detector,
            "weights": {"file": self.weights.name, "sha256": self._weights_digest()},
        }

    def real_state(self) -> dict[str, np.ndarray]:
        """The real clips' feature sums (empty before any real clip was added)."""
        return self._real.state() if self._real is not None else {}

    def load_real_state(self, state: dict[str, np.ndarray]) -> None:
        self._real = FeatureAccumulator.from_state(state)

    def reset_fake(self) -> None:
        """Forget the generated clips (keep the real statistics for the next evaluation)."""
        self._fake = None

    # ------------------------------------------------------------------------------------------ compute

    def compute(self) -> dict[str, float]:
        real, fake = self.num_real_seen, self.num_fake_seen
        if real < 2 or fake < 2:
            raise ValueError(
                f"{self.name}: the covariance needs at least 2 real and 2 generated clips, got {real} real and "
                f"{fake} generated"
            )
        if real < self.num_real or fake < self.num_fake:
            warnings.warn(
                f"{self.name}: computed from {real} real / {fake} generated clips, fewer than the protocol's "
                f"{self.num_real} / {self.num_fake}; the value is not comparable with published FVDs",
                stacklevel=2,
            )
        assert self._real is not None and self._fake is not None
        value = frechet_distance(self._real.stats(self.unbiased_cov), self._fake.stats(self.unbiased_cov))
        return {self.name: value}
