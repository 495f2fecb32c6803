"""Frame-level FID and Inception Score of videos, with the FID Inception-v3 of torchmetrics / torch-fidelity.

Network: torch-fidelity's ``inception-v3-compat`` as wrapped by torchmetrics (``NoTrainInceptionV3``), i.e. the
TensorFlow ``inception-2015-12-05`` graph ported to PyTorch (the network of the original TTUR FID, pytorch-fid,
torch-fidelity and torchmetrics). Its weights are read from a local file (``weights``): torchmetrics'
``feature_extractor_weights_path``; torchmetrics' ``InceptionScore`` has no such argument, so IS builds the same
network itself with the path. Nothing is ever downloaded.

Input conversion (:func:`inception_frames`, the one place): uint8 ``(N, F, H, W, 3)`` -> ``frames_per_clip``
evenly spaced frames of every clip (all frames when ``None``) -> uint8 ``(N * k, 3, H, W)``. The network itself
then resizes to 299x299 with torch-fidelity's TensorFlow-1.x-compatible bilinear resize (``antialias=False``:
torchmetrics' default ``antialias=True`` would differ from the reference FID) and maps ``[0, 255]`` to
``[-1, 1]`` as ``(x - 128) / 128``.

- FID: 2048-d pool3 features of real and generated frames, ``torchmetrics.image.fid.FrechetInceptionDistance``
  (float64 sums, unbiased covariance as ``numpy.cov`` / pytorch-fid). Real sums are cacheable.
- IS: softmax of the 1008-way logits without the fc bias (``logits_unbiased``, as in the original TF IS code and
  torch-fidelity), :func:`inception_score` over ``splits`` consecutive splits (no shuffling; the order of the
  generated frames is the order of the splits).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.weights import WeightFile

__all__ = [
    "INCEPTION_WEIGHTS",
    "FrameFID",
    "FrameIS",
    "evenly_spaced_indices",
    "inception_frames",
    "inception_score",
    "resolve_device",
]

#: conventional file name of the FID Inception weights (pytorch-fid's release name)
INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_DESCRIPTION = (
    "FID Inception-v3 weights 'inception-2015-12-05' ported to PyTorch (a state dict for torch-fidelity's "
    "inception-v3-compat network, as used by torchmetrics); get pytorch-fid's release "
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth "
    "or torch-fidelity's https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth (about 95 MB)"
)
#: the resize inside the network (recorded in the cache key)
INCEPTION_RESIZE = "tf1-bilinear-299"
FID_FEATURES = (64, 192, 768, 2048)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` / ``None`` -> ``cuda`` when available else ``cpu``; anything else goes to ``torch.device``."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evenly_spaced_indices(num_frames: int, count: int | None) -> torch.Tensor:
    """Indices of ``count`` frames spread evenly over ``num_frames`` (first and last included); all frames when
    ``count`` is ``None``. Returns a ``(count,)`` long tensor."""
    if count is None:
        return torch.arange(num_frames)
    if count > num_frames:
        raise ValueError(f"asked for {count} frames per clip but clips have {num_frames}")
    if count == 1:
        return torch.tensor([(num_frames - 1) // 2])
    return torch.linspace(0, num_frames - 1, count).round().long()


def _check_positive(metric: str, **values: int | None) -> None:
    for key, value in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{metric}: '{key}' must be a positive integer, got {value!r}")


def inception_frames(videos: torch.Tensor, frames_per_clip: int | None, metric: str = "fid") -> torch.Tensor:
    """Videos -> the Inception network's input.

    Args:
        videos: ``(N, F, H, W, 3)`` uint8 in ``[0, 255]``.
        frames_per_clip: frames taken from each clip, evenly spaced (``None``: all ``F``).

    Returns:
        ``(N * k, 3, H, W)`` uint8, clip-major (all frames of clip 0, then clip 1, ...). Resizing to 299 and
        scaling to ``[-1, 1]`` happen inside the network (TF-compatible bilinear, ``(x - 128) / 128``).
    """
    check_uint8_videos(videos, metric, min_frames=frames_per_clip or 1)
    index = evenly_spaced_indices(videos.shape[1], frames_per_clip).to(videos.device)
    frames = videos.index_select(1, index)
    return frames.flatten(0, 1).permute(0, 3, 1, 2).contiguous()


def inception_score(probs: torch.Tensor | np.ndarray, splits: int = 1) -> tuple[float, float]:
    """Inception score ``exp(E_x KL(p(y|x) || p(y)))`` of class probabilities, per split.

    The ``N`` rows are cut into ``splits`` consecutive parts ``[i N // s, (i + 1) N // s)`` (the original
    Salimans et al. / TGANv2 / StyleGAN-V slicing, no shuffling); each part's marginal ``p(y)`` is its mean row.

    Args:
        probs: ``(N, C)`` probabilities (rows sum to 1), computed in float64.
        splits: number of parts, ``1 <= splits <= N``.

    Returns:
        ``(mean, std)`` over the splits (population std, as ``numpy.std``; 0 for one split).
    """
    p = torch.as_tensor(probs).detach().to("cpu", torch.float64)
    if p.dim() != 2 or p.shape[0] == 0:
        raise ValueError(f"probabilities must be a non-empty (N, C) matrix, got shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if not torch.allclose(p.sum(dim=1), torch.ones(p.shape[0], dtype=torch.float64), atol=1e-4):
        raise ValueError("probability rows must sum to 1 (give softmax outputs, not logits)")
    n = p.shape[0]
    if not isinstance(splits, int) or splits < 1 or splits > n:
        raise ValueError(f"splits must be an integer in [1, {n}] (number of samples), got {splits!r}")
    scores = []
    for i in range(splits):
        part = p[i * n // splits : (i + 1) * n // splits]
        marginal = part.mean(dim=0, keepdim=True)
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(dim=1).mean()
        scores.append(torch.exp(kl))
    values = torch.stack(scores)
    return float(values.mean()), float(values.std(unbiased=False))


def _prevalidate_state_dict(path: Path, metric: str) -> None:
    """Read the file with ``weights_only=True`` first: torch-fidelity then reads it with ``weights_only=False``,
    which must never run on a file that is not a plain dict of tensors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"metric '{metric}': '{path}' is not a plain PyTorch state dict of the FID Inception "
            f"({INCEPTION_DESCRIPTION}): {error}"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"metric '{metric}': '{path}' does not hold a state dict (name -> tensor)")
    if "fc.weight" not in state or tuple(state["fc.weight"].shape) != (1008, 2048):
        raise ValueError(
            f"metric '{metric}': '{path}' is not the FID Inception state dict (expected 'fc.weight' of shape "
            f"(1008, 2048)); {INCEPTION_DESCRIPTION}"
        )


def _build(path: Path, metric: str, cls: Any, **kwargs: Any) -> Any:
    """``cls(**kwargs, feature_extractor_weights_path=path, antialias=False)``: a torchmetrics Inception wrapper that
    loads ``path`` through torch-fidelity, with a key mismatch turned into a clear error.

    ``antialias`` only exists in recent torchmetrics (older ones always use the TF-compatible resize, which is what
    it selects); a torchmetrics without ``feature_extractor_weights_path`` would download, so it is refused.
    """
    parameters = inspect.signature(cls.__init__).parameters
    if "feature_extractor_weights_path" not in parameters:
        raise RuntimeError(
            f"metric '{metric}': this torchmetrics cannot read local Inception weights "
            "(no feature_extractor_weights_path); upgrade torchmetrics"
        )
    if "antialias" in parameters:
        kwargs["antialias"] = False
    _prevalidate_state_dict(path, metric)
    try:
        return cls(**kwargs, feature_extractor_weights_path=str(path))
    except RuntimeError as error:
        raise ValueError(
            f"metric '{metric}': '{path}' does not fit the FID Inception network: {error}"
        ) from error


class _InceptionMetric(VideoMetric):
    """Shared config and weight handling of :class:`FrameFID` and :class:`FrameIS`."""

    def __init__(
        self,
        weights: str | Path,
        num_fake: int,
        frames_per_clip: int | None,
        batch_size: int,
        device: str,
    ) -> None:
        _check_positive(self.name, num_fake=num_fake, frames_per_clip=frames_per_clip, batch_size=batch_size)
        self.weights = Path(weights)
        self.num_fake = num_fake
        self.frames_per_clip = frames_per_clip
        self.batch_size = batch_size
        self.device = resolve_device(device)

    def required_files(self) -> list[WeightFile]:
        return [WeightFile(path=self.weights, metric=self.name, description=INCEPTION_DESCRIPTION)]

    def _weights_path(self) -> Path:
        return self.required_files()[0].check()

    def _batches(self, videos: torch.Tensor) -> list[torch.Tensor]:
        """Validated network input in chunks of ``batch_size`` frames (checked before any network is loaded)."""
        frames = inception_frames(videos, self.frames_per_clip, self.name)
        return list(frames.split(self.batch_size))


class FrameFID(_InceptionMetric):
    """FID between frames of real and generated videos (torchmetrics ``FrechetInceptionDistance``).

    Args (config keys):
        weights: FID Inception state dict (default :data:`INCEPTION_WEIGHTS`, under ``$VIDGEN_WEIGHTS``).
        num_real: real clips (default 2048).
        num_fake: generated clips (default 2048).
        frames_per_clip: frames per clip, evenly spaced; ``None`` = every frame.
        feature: Inception feature layer, 2048 (pool3, the standard FID) or 64 / 192 / 768 (not comparable with
            published FIDs; for quick checks).
        batch_size: frames per network call.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Result: ``{"fid": value}``.
    """

    name = "fid"
    needs_real = True

    def __init__(
        self,
        weights: str | Path = INCEPTION_WEIGHTS,
        num_real: int = 2048,
        num_fake: int = 2048,
        frames_per_clip: int | None = None,
        feature: int = 2048,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        super().__init__(weights, num_fake, frames_per_clip, batch_size, device)
        _check_positive(self.name, num_real=num_real)
        if feature not in FID_FEATURES:
            raise ValueError(f"fid: 'feature' must be one of {FID_FEATURES}, got {feature!r}")
        self.num_real = num_real
        self.feature = feature
        self._fid: Any = None  # torchmetrics FrechetInceptionDistance, built on first use
        self._pending_real: dict[str, np.ndarray] | None = None

    def describe(self) -> dict[str, str]:
        """What each result key means."""
        frames = (
            "all frames" if self.frames_per_clip is None else f"{self.frames_per_clip} evenly spaced frames"
        )
        return {
            "fid": (
                f"frame FID, FID Inception-v3 pool ({self.feature}-d, TF-compatible resize to 299), "
                f"{self.num_real} real vs {self.num_fake} generated clips, {frames} per clip"
            )
        }

    def real_cache_key(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "network": "inception-v3-compat (inception-2015-12-05)",
            "weights": self.weights.name,
            "feature": self.feature,
            "resize": INCEPTION_RESIZE,
            "frames_per_clip": self.frames_per_clip,
        }

    def _metric(self) -> Any:
        if self._fid is None:
            from torchmetrics.image.fid import FrechetInceptionDistance

            path = self._weights_path()
            self._fid = _build(
                path, self.name, FrechetInceptionDistance, feature=self.feature, normalize=False
            ).to(self.device)
            if self._pending_real is not None:
                self._apply_real_state(self._pending_real)
                self._pending_real = None
        return self._fid

    def _apply_real_state(self, state: dict[str, np.ndarray]) -> None:
        fid = self._fid
        fid.real_features_sum = torch.as_tensor(state["sum"], dtype=torch.float64, device=self.device).clone()
        fid.real_features_cov_sum = torch.as_tensor(
            state["sum_outer"], dtype=torch.float64, device=self.device
        ).clone()
        fid.real_features_num_samples = torch.as_tensor(
            int(state["num"]), dtype=torch.long, device=self.device
        )

    def real_state(self) -> dict[str, np.ndarray]:
        """Float64 sums of the real features: ``num`` (frames), ``sum`` ``(D,)``, ``sum_outer`` ``(D, D)``."""
        if self._fid is None:
            if self._pending_real is None:
                raise RuntimeError("fid: no real videos seen and no cached real statistics loaded")
            return {k: np.array(v) for k, v in self._pending_real.items()}
        return {
            "num": np.asarray(int(self._fid.real_features_num_samples), dtype=np.int64),
            "sum": self._fid.real_features_sum.detach().cpu().numpy().astype(np.float64),
            "sum_outer": self._fid.real_features_cov_sum.detach().cpu().numpy().astype(np.float64),
        }

    def load_real_state(self, state: dict[str, np.ndarray]) -> None:
        missing = [key for key in ("num", "sum", "sum_outer") if key not in state]
        if missing:
            raise ValueError(f"fid: cached real statistics lack {missing}; have {sorted(state)}")
        total = np.asarray(state["sum"], dtype=np.float64)
        outer = np.asarray(state["sum_outer"], dtype=np.float64)
        if total.shape != (self.feature,) or outer.shape != (self.feature, self.feature):
            raise ValueError(
                f"fid: cached real statistics have shapes {total.shape} / {outer.shape}, expected "
                f"({self.feature},) / ({self.feature}, {self.feature})"
            )
        clean = {"num": np.asarray(int(np.asarray(state["num"]).reshape(())), dtype=np.int64), "sum": total}
        clean["sum_outer"] = outer
        if self._fid is None:
            self._pending_real = clean
        else:
            self._apply_real_state(clean)

    @torch.no_grad()
    def _update(self, videos: torch.Tensor, real: bool) -> None:
        batches = self._batches(videos)
        fid = self._metric()
        for batch in batches:
            fid.update(batch.to(self.device), real=real)

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._update(videos, real=True)

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        self._update(videos, real=False)

    def compute(self) -> dict[str, float]:
        return {"fid": float(self._metric().compute())}


class FrameIS(_InceptionMetric):
    """Inception Score of generated frames (FID Inception-v3, 1008-way ``logits_unbiased``).

    Args (config keys):
        weights: FID Inception state dict (default :data:`INCEPTION_WEIGHTS`).
        num_fake: generated clips (default 2048).
        frames_per_clip: frames per clip, evenly spaced; ``None`` = every frame.
        splits: consecutive splits of the frames (default 10, as in the original IS).
        batch_size: frames per network call.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Result: ``{"is": mean over splits, "is/std": population std over splits}``.
    """

    name = "is"
    needs_real = False

    def __init__(
        self,
        weights: str | Path = INCEPTION_WEIGHTS,
        num_fake: int = 2048,
        frames_per_clip: int | None = None,
        splits: int = 10,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        super().__init__(weights, num_fake, frames_per_clip, batch_size, device)
        _check_positive(self.name, splits=splits)
        self.splits = splits
        self._network: Any = None
        self._logits: list[torch.Tensor] = []

    def describe(self) -> dict[str, str]:
        frames = (
            "all frames" if self.frames_per_clip is None else f"{self.frames_per_clip} evenly spaced frames"
        )
        text = f"frame IS, FID Inception-v3 (1008 classes), {self.num_fake} clips, {frames} per clip, {self.splits} splits"
        return {"is": f"{text} (mean)", "is/std": f"{text} (std over splits)"}

    def _net(self) -> Any:
        if self._network is None:
            from torchmetrics.image.fid import NoTrainInceptionV3

            path = self._weights_path()
            self._network = _build(
                path,
                self.name,
                NoTrainInceptionV3,
                name="inception-v3-compat",
                features_list=["logits_unbiased"],
            ).to(self.device)
        return self._network

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        raise RuntimeError("is: scores generated videos only (needs_real is False)")

    @torch.no_grad()
    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        batches = self._batches(videos)
        net = self._net()
        for batch in batches:
            self._logits.append(net(batch.to(self.device)).double().cpu())

    def probabilities(self) -> torch.Tensor:
        """``(M, 1008)`` float64 class probabilities of every generated frame seen so far, in order."""
        if not self._logits:
            raise RuntimeError("is: no generated videos seen")
        return torch.cat(self._logits).softmax(dim=1)

    def compute(self) -> dict[str, float]:
        mean, std = inception_score(self.probabilities(), self.splits)
        return {"is": mean, "is/std": std}
