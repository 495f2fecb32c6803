"""A small video classifier for the synthetic classes, defined and trained by vidgen itself (no downloads).

The classes of :class:`~vidgen.data.synthetic.SyntheticVideoDataset` are ``(shape, motion)`` pairs of the
primary object; for one shape they differ only in motion, so the network must use time: every convolution is
3-D (3 frames wide), and features keep the time axis until the final pooling.

Architecture (``width`` ``w``, ``feature_dim`` ``d``; input ``(N, 3, F, R, R)`` float in ``[-1, 1]``)::

    input  the frames and their temporal differences x[t+1] - x[t] (zero for the last frame)   -> 6 channels
    stem   Conv3d(6 -> w,    k=(3, 2s+1, 2s+1), stride (1, s, s))  GroupNorm SiLU   s = max(1, R // 16)
    block  Conv3d(w -> 2w,   k=3, stride (1, 2, 2))                GroupNorm SiLU
    block  Conv3d(2w -> 4w,  k=3, stride (1, 2, 2))                GroupNorm SiLU
    block  Conv3d(4w -> 4w,  k=3)                                  GroupNorm SiLU
    pool   mean and max over (time, height, width), concatenated    -> 8w
    feat   Linear(8w -> d) SiLU                                     -> penultimate features (Synthetic FVD)
    head   Linear(d -> num_classes)                                 -> logits

The stem's stride keeps the cost about constant for ``R >= 32`` (``R = 32``: stride 2, ``R = 64``: stride 4).

Training (:func:`train_synthetic_classifier`) streams fresh clips from the dataset's ``train`` split (step
``k`` uses items ``k * batch_size ...``), so no clip is seen twice; it is deterministic given the settings
(fixed torch seed in a forked RNG state, one intra-op thread, no data-order randomness). Held-out accuracy is
measured on the ``val`` split. :func:`load_or_train_classifier` caches the ``state_dict`` on disk, keyed by the
data settings, the classifier / training settings and :data:`CLASSIFIER_VERSION`.

Inputs are uint8 ``(N, F, H, W, 3)`` (the metrics' format), converted by :func:`videos_to_input`; clips must
have exactly the classifier's frame count and resolution (``ValueError`` otherwise; nothing is resized).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.metrics.base import check_uint8_videos

__all__ = [
    "CLASSIFIER_VERSION",
    "DEFAULT_TRAINING",
    "SyntheticVideoClassifier",
    "classifier_settings",
    "default_cache_dir",
    "generator_kwargs",
    "load_or_train_classifier",
    "resolve_device",
    "synthetic_clips",
    "synthetic_dataset",
    "train_synthetic_classifier",
    "videos_to_input",
]

#: Bump when the architecture, the training procedure or the input conversion changes: it is part of the
#: cache key, so old cached weights are never reused by new code.
CLASSIFIER_VERSION = 1

#: Default classifier / training settings (all part of the cache key).
DEFAULT_TRAINING: dict[str, Any] = {
    "steps": 300,
    "batch_size": 48,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "width": 8,
    "feature_dim": 64,
    "eval_clips": 630,
}

#: Dataset arguments that a caller may set besides ``num_frames`` / ``resolution`` (``data`` dicts).
DATA_KEYS = (
    "seed",
    "max_objects",
    "min_objects",
    "shapes",
    "motions",
    "colors",
    "object_size",
    "speed",
    "background",
    "frame_stride",
)


def default_cache_dir() -> Path:
    """``$VIDGEN_CACHE`` when set, else ``~/.cache/vidgen``."""
    return Path(os.environ.get("VIDGEN_CACHE") or "~/.cache/vidgen").expanduser()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else CPU; anything else as given."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------------------------ data
def generator_kwargs(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated dataset keyword arguments (lists for sequences, so they hash and compare as JSON; ``None``
    values dropped); ``ValueError`` for keys outside :data:`DATA_KEYS`."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(DATA_KEYS))
    if unknown:
        raise ValueError(f"synthetic classifier: unknown data settings {unknown}; allowed: {list(DATA_KEYS)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        out[key] = list(value) if isinstance(value, list | tuple) else value
    return out


def synthetic_dataset(
    num_clips: int, num_frames: int, resolution: int, split: str, data: Mapping[str, Any] | None = None
) -> SyntheticVideoDataset:
    """An RGB :class:`SyntheticVideoDataset` with the given shape, split and extra ``data`` settings."""
    return SyntheticVideoDataset(
        num_clips=num_clips,
        num_frames=num_frames,
        resolution=resolution,
        channels=3,
        split=split,
        **generator_kwargs(data),
    )


def synthetic_clips(
    num: int,
    num_frames: int,
    resolution: int,
    split: str = "val",
    start: int = 0,
    data: Mapping[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips ``start ... start + num - 1`` of a split as the metrics see them.

    Returns:
        ``(videos, labels)``: uint8 ``(num, F, R, R, 3)`` (rounded exactly like
        :func:`vidgen.io.video.video_to_uint8`) and int64 ``(num,)`` class labels.
    """
    dataset = synthetic_dataset(start + num, num_frames, resolution, split, data)
    specs = [dataset.describe(i) for i in range(start, start + num)]
    floats = torch.stack([dataset.render(spec) for spec in specs])  # (N, 3, F, R, R) in [-1, 1]
    videos = floats.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1)
    labels = torch.tensor([spec.label for spec in specs], dtype=torch.int64)
    return videos.contiguous(), labels


def videos_to_input(
    videos: torch.Tensor,
    num_frames: int | None = None,
    resolution: int | None = None,
    metric: str = "synthetic classifier",
) -> torch.Tensor:
    """uint8 ``(N, F, H, W, 3)`` -> float ``(N, 3, F, H, W)`` in ``[-1, 1]`` (``0 -> -1``, ``255 -> 1``).

    Raises ``ValueError`` (naming ``metric``) for anything that is not uint8 ``(N, F, H, W, 3)``, or whose
    frame count / resolution differs from ``num_frames`` / ``resolution`` when those are given.
    """
    check_uint8_videos(videos, metric)
    _, frames, height, width, _ = videos.shape
    if num_frames is not None and frames != num_frames:
        raise ValueError(
            f"{metric}: the classifier was trained on {num_frames}-frame clips, got {frames} frames "
            "(set the metric's num_frames to the clips' length)"
        )
    if resolution is not None and (height, width) != (resolution, resolution):
        raise ValueError(
            f"{metric}: the classifier was trained on {resolution}x{resolution} frames, got {height}x{width} "
            "(set the metric's resolution to the clips' size; nothing is resized)"
        )
    return videos.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------------------------- model
def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(4, channels), channels)


class SyntheticVideoClassifier(nn.Module):
    """Small 3-D CNN for the synthetic ``(shape, motion)`` classes (see the module docstring).

    Args:
        num_classes: output classes.
        num_frames: clip length it is trained for (kept for input checks).
        resolution: frame size it is trained for (kept for input checks; sets the stem's stride).
        width: channels of the first layer (later layers 2x, 4x).
        feature_dim: size of the penultimate feature layer.
    """

    def __init__(
        self, num_classes: int, num_frames: int, resolution: int, width: int = 16, feature_dim: int = 64
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.num_frames = int(num_frames)
        self.resolution = int(resolution)
        self.feature_dim = int(feature_dim)
        s = max(1, self.resolution // 16)
        w = int(width)
        self.stem = nn.Sequential(
            nn.Conv3d(6, w, (3, 2 * s + 1, 2 * s + 1), stride=(1, s, s), padding=(1, s, s)),
            _norm(w),
            nn.SiLU(),
        )
        self.blocks = nn.Sequential(
            nn.Conv3d(w, 2 * w, 3, stride=(1, 2, 2), padding=1),
            _norm(2 * w),
            nn.SiLU(),
            nn.Conv3d(2 * w, 4 * w, 3, stride=(1, 2, 2), padding=1),
            _norm(4 * w),
            nn.SiLU(),
            nn.Conv3d(4 * w, 4 * w, 3, padding=1),
            _norm(4 * w),
            nn.SiLU(),
        )
        self.feature = nn.Linear(8 * w, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, feature_dim)`` of float ``(N, 3, F, R, R)`` clips in ``[-1, 1]``."""
        step = x[:, :, 1:] - x[:, :, :-1]  # frame differences: an explicit motion cue
        x = torch.cat([x, torch.cat([step, torch.zeros_like(x[:, :, :1])], dim=2)], dim=1)
        h = self.blocks(self.stem(x)).flatten(2)
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return F.silu(self.feature(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(
        self, videos: torch.Tensor, batch_size: int = 128, metric: str = "synthetic classifier"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, logits)`` (float32, CPU) of uint8 ``(N, F, H, W, 3)`` videos, in eval mode."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        feats, logits = [], []
        try:
            for chunk in videos.split(batch_size):
                x = videos_to_input(chunk, self.num_frames, self.resolution, metric).to(device)
                f = self.features(x)
                feats.append(f.float().cpu())
                logits.append(self.head(f).float().cpu())
        finally:
            self.train(was_training)
        if not feats:
            empty = torch.zeros(0, self.feature_dim)
            return empty, torch.zeros(0, self.num_classes)
        return torch.cat(feats), torch.cat(logits)


# -------------------------------------------------------------------------------------------- training
def classifier_settings(
    num_frames: int, resolution: int, seed: int = 0, data: Mapping[str, Any] | None = None, **training: Any
) -> dict[str, Any]:
    """Everything that determines the trained weights (the cache key), as plain JSON values."""
    unknown = sorted(set(training) - set(DEFAULT_TRAINING))
    if unknown:
        raise ValueError(
            f"synthetic classifier: unknown training settings {unknown}; allowed: {list(DEFAULT_TRAINING)}"
        )
    if int(num_frames) < 2:
        raise ValueError(f"synthetic classifier: needs clips of >= 2 frames to see motion, got {num_frames}")
    merged = {**DEFAULT_TRAINING, **{k: v for k, v in training.items() if v is not None}}
    return {
        "version": CLASSIFIER_VERSION,
        "num_frames": int(num_frames),
        "resolution": int(resolution),
        "seed": int(seed),
        "data": _resolved_data(num_frames, resolution, data),
        "training": merged,
    }


def _resolved_data(num_frames: int, resolution: int, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every generator setting, defaults filled in (so equal settings give equal cache keys however given)."""
    dataset = synthetic_dataset(1, num_frames, resolution, "train", data)
    resolved = {}
    for key in DATA_KEYS:
        value = getattr(dataset, key)
        resolved[key] = list(value) if isinstance(value, tuple) else value
    return resolved


def _build(settings: Mapping[str, Any], num_classes: int) -> SyntheticVideoClassifier:
    training = settings["training"]
    return SyntheticVideoClassifier(
        num_classes=num_classes,
        num_frames=settings["num_frames"],
        resolution=settings["resolution"],
        width=int(training["width"]),
        feature_dim=int(training["feature_dim"]),
    )


@torch.no_grad()
def _accuracy(model: SyntheticVideoClassifier, videos: torch.Tensor, labels: torch.Tensor) -> float:
    _, logits = model.embed(videos)
    return float((logits.argmax(dim=1) == labels).float().mean())


def train_synthetic_classifier(
    num_frames: int,
    resolution: int,
    seed: int = 0,
    data: Mapping[str, Any] | None = None,
    threads: int | None = 1,
    **training: Any,
) -> tuple[SyntheticVideoClassifier, dict[str, Any]]:
    """Train the classifier on the ``train`` split; measure accuracy on held-out ``val`` clips.

    Args:
        num_frames, resolution: clip shape (the classifier only accepts this shape).
        seed: torch seed for the initial weights (the data are deterministic by themselves).
        data: extra :class:`SyntheticVideoDataset` settings (``seed``, ``object_size``, ``speed``, ...; see
            :data:`DATA_KEYS`).
        threads: intra-op threads while training (restored afterwards); 1 is fastest for these tiny
            convolutions and makes runs bit-identical. ``None`` leaves the setting alone.
        **training: overrides of :data:`DEFAULT_TRAINING` (``steps``, ``batch_size``, ``lr``, ...).

    Returns:
        ``(model, report)``: the model in eval mode (CPU, no gradients) and a dict with ``settings``,
        ``train_seconds``, ``final_loss``, ``train_accuracy`` (last 20 steps), ``val_accuracy``, ``val_clips``.
    """
    settings = classifier_settings(num_frames, resolution, seed, data, **training)
    cfg = settings["training"]
    steps, batch = int(cfg["steps"]), int(cfg["batch_size"])
    dataset = synthetic_dataset(steps * batch, num_frames, resolution, "train", settings["data"])
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model = _build(settings, dataset.num_classes)
            optimizer = torch.optim.AdamW(
                model.parameters(), lr=float(cfg["lr"]), weight_decay=cfg["weight_decay"]
            )
            warmup = max(1, steps // 20)

            def schedule(step: int) -> float:  # linear warm-up, cosine decay to 2% of the peak
                if step < warmup:
                    return (step + 1) / warmup
                progress = (step - warmup) / max(1, steps - warmup)
                return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
            model.train()
            losses, hits = [], []
            for step in range(steps):
                videos, labels = synthetic_clips(batch, num_frames, resolution, "train", step * batch, data)
                logits = model(videos_to_input(videos))
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(float(loss.detach()))
                hits.append(float((logits.argmax(dim=1) == labels).float().mean()))
        train_seconds = time.perf_counter() - start
        model.eval().requires_grad_(False)
        val_videos, val_labels = synthetic_clips(
            int(cfg["eval_clips"]), num_frames, resolution, "val", 0, data
        )
        val_accuracy = _accuracy(model, val_videos, val_labels)
    finally:
        torch.set_num_threads(previous_threads)
    tail = max(1, min(20, steps))
    report = {
        "settings": settings,
        "num_classes": dataset.num_classes,
        "train_seconds": round(train_seconds, 3),
        "final_loss": sum(losses[-tail:]) / tail,
        "train_accuracy": sum(hits[-tail:]) / tail,
        "val_accuracy": val_accuracy,
        "val_clips": int(cfg["eval_clips"]),
    }
    return model, report


# ------------------------------------------------------------------------------------------------ cache
def _cache_path(cache_dir: str | Path, settings: Mapping[str, Any]) -> Path:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    name = f"synthetic_classifier-f{settings['num_frames']}-r{settings['resolution']}-{digest}.pt"
    return Path(cache_dir).expanduser() / "synthetic_classifier" / name


def _atomic_save(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def load_or_train_classifier(
    cache_dir: str | Path | None,
    num_frames: int,
    resolution: int,
    seed: int = 0,
    data: Mapping[str, Any] | None = None,
    device: str | torch.device | None = "cpu",
    **training: Any,
) -> tuple[SyntheticVideoClassifier, dict[str, Any]]:
    """The cached classifier for these settings, training (and caching) it first when there is none.

    The weights live in ``<cache_dir>/synthetic_classifier/synthetic_classifier-f<F>-r<R>-<hash>.pt`` (a
    ``state_dict``, loaded with ``weights_only=True``) next to a ``.json`` with the settings and the training
    report. ``cache_dir=None`` uses :func:`default_cache_dir`. Writes are atomic.

    Returns:
        ``(model, report)``: the model in eval mode on ``device`` (no gradients); the report of the training
        run plus ``cache`` (``"hit"`` or ``"trained"``) and ``path``. Training always runs on the CPU.
    """
    settings = classifier_settings(num_frames, resolution, seed, data, **training)
    path = _cache_path(cache_dir if cache_dir is not None else default_cache_dir(), settings)
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        info = json.loads(sidecar.read_text())
        if info.get("settings") == settings:
            model = _build(settings, int(info["num_classes"]))
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            model.eval().requires_grad_(False)
            return model.to(resolve_device(device)), {**info, "cache": "hit", "path": str(path)}
    model, report = train_synthetic_classifier(
        num_frames, resolution, seed=seed, data=settings["data"], **settings["training"]
    )
    _atomic_save(path, lambda temp: torch.save(model.state_dict(), temp))
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    _atomic_save(sidecar, lambda temp: Path(temp).write_text(text))
    return model.to(resolve_device(device)), {**report, "cache": "trained", "path": str(path)}
