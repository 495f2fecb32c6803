"""Procedural clips of coloured shapes moving on a dark background.

Every clip is a pure function of ``(seed, split, index)``: the generator draws a :class:`ClipSpec` (per
object: shape, colour, motion kind, size, per-frame centre positions) and renders it with signed-distance
coverage on coordinate grids (no per-pixel Python loops). The spec is public (:meth:`describe`) so that an
evaluation can check generated clips against the known structure.

Geometry conventions (pixel units): the pixel in row ``i``, column ``j`` has its centre at ``(x, y) = (j, i)``;
the frame covers ``[-0.5, R - 0.5]`` on both axes. Object ``size`` is the full extent: side of a square, diameter
of a circle, side of an upright equilateral triangle; an object's centre is its centroid. Edges are
anti-aliased with a 1-pixel linear ramp: coverage ``= clamp(0.5 - sdf, 0, 1)``.

Classes are ``(shape, motion)`` pairs of the *first* (primary) object: ``label = shape_idx * len(motions) +
motion_idx``, named ``"<shape> <motion phrase>"`` (e.g. ``"square moving left"``). With the defaults there are
3 x 7 = 21 classes; see :data:`SHAPES`, :data:`MOTIONS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.config.errors import ConfigError

__all__ = [
    "MOTIONS",
    "MOTION_PHRASES",
    "PALETTE",
    "SHAPES",
    "SPLITS",
    "ClipSpec",
    "ObjectSpec",
    "SyntheticVideoDataset",
]

#: Split name -> stream id; each split draws from its own random stream, so splits never share clips.
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}

SHAPES: tuple[str, ...] = ("square", "circle", "triangle")

#: Motion kinds. ``left/right/up/down/diagonal``: constant velocity, reflected at the frame border (the start
#: position leaves room to travel the whole clip without a bounce when the frame is large enough);
#: ``circle``: clockwise (on screen) orbit at constant speed; ``static``: no motion.
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "diagonal", "circle", "static")

MOTION_PHRASES: dict[str, str] = {
    "left": "moving left",
    "right": "moving right",
    "up": "moving up",
    "down": "moving down",
    "diagonal": "moving diagonally",
    "circle": "moving in a circle",
    "static": "standing still",
}

#: Saturated, clearly distinct colours (RGB, 0-255).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "green": (30, 210, 50),
    "blue": (40, 80, 255),
    "yellow": (250, 230, 20),
    "magenta": (235, 40, 235),
    "cyan": (20, 225, 235),
    "white": (245, 245, 245),
    "orange": (255, 140, 0),
}

_SQRT3 = math.sqrt(3.0)


@dataclass(frozen=True, eq=False)
class ObjectSpec:
    """One rendered object.

    Attributes:
        shape: one of :data:`SHAPES`.
        color_name: key of :data:`PALETTE`.
        color_rgb: its RGB (0-255).
        motion: one of :data:`MOTIONS`.
        size: full extent in pixels (square side, circle diameter, triangle side).
        positions: ``(F, 2)`` float32 centre ``(x, y)`` per frame, in pixels (exactly the rendered centres).
        velocity: initial velocity ``(dx, dy)`` in pixels per frame of the underlying motion (tangential
            velocity for ``circle``); a rendered frame is ``frame_stride`` of those frames.
    """

    shape: str
    color_name: str
    color_rgb: tuple[int, int, int]
    motion: str
    size: float
    positions: torch.Tensor
    velocity: tuple[float, float]

    @property
    def phrase(self) -> str:
        """E.g. ``"a red square moving left"``, ``"an orange circle standing still"``."""
        article = "an" if self.color_name[0] in "aeiou" else "a"
        return f"{article} {self.color_name} {self.shape} {MOTION_PHRASES[self.motion]}"


@dataclass(frozen=True, eq=False)
class ClipSpec:
    """The full description of one synthetic clip.

    Attributes:
        split: ``"train"``, ``"val"`` or ``"test"``.
        index: item index within the split.
        num_frames: ``F``.
        resolution: ``R`` (frames are ``R x R``).
        background_rgb: background colour (0-255).
        objects: drawn in order (later objects over earlier ones); ``objects[0]`` is the primary object.
        label: class index of the primary object's ``(shape, motion)``.
        caption: ``" and "``-joined object phrases, e.g. ``"a red square moving left and a blue circle moving up"``.
        frame_stride: rendered frames are every ``frame_stride``-th frame of the underlying motion.
    """

    split: str
    index: int
    num_frames: int
    resolution: int
    background_rgb: tuple[int, int, int]
    objects: tuple[ObjectSpec, ...]
    label: int
    caption: str
    frame_stride: int = 1

    @property
    def primary(self) -> ObjectSpec:
        return self.objects[0]


def _extents(shape: str, size: float) -> tuple[float, float, float, float]:
    """Distances from the centre to the (left, right, top, bottom) edge of the shape, in pixels."""
    if shape == "triangle":
        return size / 2, size / 2, size / _SQRT3, size / (2 * _SQRT3)
    return size / 2, size / 2, size / 2, size / 2


def _fold(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect unconstrained positions into ``[lo, hi]`` (elastic bounces off both walls)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(p, lo)
    u = np.mod(p - lo, 2 * span)
    return lo + span - np.abs(u - span)


def _sdf(shape: str, dx: np.ndarray, dy: np.ndarray, size: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a centred shape, broadcast over ``dx`` and ``dy``."""
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - np.float32(size / 2)
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - np.float32(size / 2)
    if shape == "triangle":
        half_sqrt3 = np.float32(0.5 * _SQRT3)
        bottom = dy
        left = -half_sqrt3 * dx - np.float32(0.5) * dy
        right = half_sqrt3 * dx - np.float32(0.5) * dy
        return np.maximum(np.maximum(bottom, left), right) - np.float32(size / (2 * _SQRT3))
    raise ValueError(f"unknown shape {shape!r}")


def _as_range(
    key: str, value: Sequence[float] | float, high: float, zero_ok: bool = False
) -> tuple[float, float]:
    """Parse ``value`` as a ``(min, max)`` pair with ``0 < min <= max <= high`` (a scalar means a fixed value)."""
    bound = "0 <=" if zero_ok else "0 <"
    try:
        pair = (
            (float(value), float(value)) if isinstance(value, int | float) else tuple(float(v) for v in value)
        )
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or not (pair[0] >= 0 if zero_ok else pair[0] > 0) or not pair[0] <= pair[1] <= high:
        raise ConfigError(key, f"expected [min, max] with {bound} min <= max <= {high}, got {value!r}")
    return pair  # type: ignore[return-value]


def _as_choice(key: str, value: Sequence[str] | None, allowed: Sequence[str]) -> tuple[str, ...]:
    if value is None:
        return tuple(allowed)
    chosen = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
    unknown = [v for v in chosen if v not in allowed]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ConfigError(
            key, f"expected a non-empty list of distinct values from {list(allowed)}, got {value!r}"
        )
    return chosen


class SyntheticVideoDataset(Dataset):
    """Clips of coloured shapes moving on a dark background, deterministic from ``(seed, split, index)``.

    Items are ``{"video": (C, F, R, R) float32 in [-1, 1], "label": int, "caption": str, "index": int}``.

    Args:
        num_clips: dataset length.
        num_frames: ``F`` (>= 1).
        resolution: ``R``, frames are square (>= 8).
        channels: 3 (RGB) or 1 (luma).
        split: ``"train"``, ``"val"`` or ``"test"``; splits use disjoint random streams.
        seed: non-negative base seed.
        max_objects: each clip has between ``min_objects`` and ``max_objects`` objects (uniform).
        min_objects: see above.
        shapes: subset of :data:`SHAPES` (default all); defines the classes together with ``motions``.
        motions: subset of :data:`MOTIONS` (default all).
        colors: subset of :data:`PALETTE` names (default all); objects in one clip get distinct colours
            while there are enough.
        object_size: ``[min, max]`` object extent as a fraction of ``R`` (default about a third of the frame).
        speed: ``[min, max]`` speed as a fraction of ``R`` per frame of the underlying motion (default 1-2
            px/frame at ``R = 32``).
        background: background RGB (0-255), dark by default.
        frame_stride: the synthetic counterpart of a real video's sampling interval: the motion runs for
            ``(F - 1) * frame_stride + 1`` frames and every ``frame_stride``-th frame is rendered (positions
            and velocities are those of the underlying motion, so a clip moves ``frame_stride`` times as far
            per rendered frame). ``1`` renders every frame (the default; identical clips to before).

    Config keys in errors are ``data.<arg>``.
    """

    def __init__(
        self,
        num_clips: int = 1024,
        num_frames: int = 8,
        resolution: int = 32,
        channels: int = 3,
        split: str = "train",
        seed: int = 0,
        max_objects: int = 1,
        min_objects: int = 1,
        shapes: Sequence[str] | None = None,
        motions: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
        object_size: Sequence[float] | float = (0.3, 0.4),
        speed: Sequence[float] | float = (0.03, 0.06),
        background: Sequence[int] = (8, 8, 12),
        frame_stride: int = 1,
    ) -> None:
        super().__init__()
        if int(num_clips) < 1:
            raise ConfigError("data.num_clips", f"must be >= 1, got {num_clips}")
        if int(num_frames) < 1:
            raise ConfigError("data.num_frames", f"must be >= 1, got {num_frames}")
        if int(resolution) < 8:
            raise ConfigError("data.resolution", f"must be >= 8 pixels, got {resolution}")
        if int(channels) not in (1, 3):
            raise ConfigError("data.channels", f"must be 1 or 3, got {channels}")
        if (
            isinstance(frame_stride, bool)
            or not isinstance(frame_stride, int | np.integer)
            or frame_stride < 1
        ):
            raise ConfigError("data.frame_stride", f"must be an integer >= 1, got {frame_stride!r}")
        if split not in SPLITS:
            raise ConfigError("data.split", f"must be one of {list(SPLITS)}, got {split!r}")
        if int(seed) < 0:
            raise ConfigError("data.seed", f"must be >= 0, got {seed}")
        if not 1 <= int(min_objects) <= int(max_objects):
            raise ConfigError(
                "data.max_objects", f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}"
            )
        self.num_clips = int(num_clips)
        self.num_frames = int(num_frames)
        self.frame_stride = int(frame_stride)
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.split = split
        self.seed = int(seed)
        self.min_objects = int(min_objects)
        self.max_objects = int(max_objects)
        self.shapes = _as_choice("data.shapes", shapes, SHAPES)
        self.motions = _as_choice("data.motions", motions, MOTIONS)
        self.colors = _as_choice("data.colors", colors, tuple(PALETTE))
        self.object_size = _as_range("data.object_size", object_size, 0.8)
        self.speed = _as_range("data.speed", speed, 0.5, zero_ok=True)
        self.background = tuple(int(v) for v in background)
        if len(self.background) != 3 or not all(0 <= v <= 255 for v in self.background):
            raise ConfigError("data.background", f"expected an RGB triple in 0..255, got {background!r}")
        largest = self.object_size[1] * self.resolution
        if sum(_extents("triangle", largest)[2:]) > self.resolution - 2:
            raise ConfigError(
                "data.object_size", f"objects of {largest:.1f} px do not fit a {resolution} px frame"
            )
        self._coords = np.arange(self.resolution, dtype=np.float32)

    # ----------------------------------------------------------------------------------------- classes
    @property
    def class_names(self) -> list[str]:
        """``"<shape> <motion phrase>"`` for every ``(shape, motion)``, in label order."""
        return [f"{s} {MOTION_PHRASES[m]}" for s in self.shapes for m in self.motions]

    @property
    def num_classes(self) -> int:
        return len(self.shapes) * len(self.motions)

    def label_of(self, shape: str, motion: str) -> int:
        """Class index of a ``(shape, motion)`` pair."""
        return self.shapes.index(shape) * len(self.motions) + self.motions.index(motion)

    # -------------------------------------------------------------------------------------- generation
    def __len__(self) -> int:
        return self.num_clips

    def _check_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        return index

    def _sample_object(self, rng: np.random.Generator, color_name: str) -> ObjectSpec:
        # the underlying motion spans (F - 1) * stride + 1 frames; every stride-th one is rendered
        res, frames = self.resolution, (self.num_frames - 1) * self.frame_stride + 1
        shape = self.shapes[rng.integers(len(self.shapes))]
        motion = self.motions[rng.integers(len(self.motions))]
        size = float(rng.uniform(*self.object_size) * res)
        speed = float(rng.uniform(*self.speed) * res)
        left, right, top, bottom = _extents(shape, size)
        # Allowed centre range: the anti-aliased edge (0.5 px beyond the shape) stays inside the frame.
        lo = np.array([left, top])
        hi = np.array([res - 1 - right, res - 1 - bottom])
        t = np.arange(frames, dtype=np.float64)[:, None]
        if motion == "circle":
            radius = min(0.15 * res, float((hi - lo).min()) / 2)
            centre = rng.uniform(lo + radius, hi - radius)
            angle0 = rng.uniform(0, 2 * math.pi)
            omega = speed / radius if radius > 0 else 0.0
            angle = angle0 + omega * t[:, 0]
            positions = centre + radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
            velocity = (-speed * math.sin(angle0), speed * math.cos(angle0))
        else:
            direction = {
                "left": (-1.0, 0.0),
                "right": (1.0, 0.0),
                "up": (0.0, -1.0),
                "down": (0.0, 1.0),
                "static": (0.0, 0.0),
            }.get(motion)
            if direction is None:  # diagonal: one of the four diagonals
                direction = (rng.choice([-1.0, 1.0]) / math.sqrt(2), rng.choice([-1.0, 1.0]) / math.sqrt(2))
            vel = speed * np.asarray(direction)
            # Start where the whole clip fits before the first bounce (when the frame allows it).
            travel = np.minimum(np.abs(vel) * (frames - 1), hi - lo)
            start_lo = np.where(vel < 0, lo + travel, lo)
            start_hi = np.where(vel > 0, hi - travel, hi)
            start = rng.uniform(start_lo, np.maximum(start_lo, start_hi))
            positions = np.stack([_fold(start[k] + vel[k] * t[:, 0], lo[k], hi[k]) for k in range(2)], axis=1)
            velocity = (float(vel[0]), float(vel[1]))
        return ObjectSpec(
            shape=shape,
            color_name=color_name,
            color_rgb=PALETTE[color_name],
            motion=motion,
            size=size,
            positions=torch.from_numpy(positions[:: self.frame_stride]).to(torch.float32),
            velocity=(float(velocity[0]), float(velocity[1])),
        )

    def describe(self, index: int) -> ClipSpec:
        """The structure of clip ``index`` (no rendering): objects, positions, label, caption."""
        index = self._check_index(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        if count <= len(self.colors):
            color_ids = rng.choice(len(self.colors), size=count, replace=False)
        else:
            color_ids = rng.integers(len(self.colors), size=count)
        objects = tuple(self._sample_object(rng, self.colors[int(c)]) for c in color_ids)
        return ClipSpec(
            split=self.split,
            index=index,
            num_frames=self.num_frames,
            resolution=self.resolution,
            background_rgb=self.background,  # type: ignore[arg-type]
            objects=objects,
            label=self.label_of(objects[0].shape, objects[0].motion),
            caption=" and ".join(obj.phrase for obj in objects),
            frame_stride=self.frame_stride,
        )

    def render(self, spec: ClipSpec) -> torch.Tensor:
        """Render a spec to ``(C, F, R, R)`` float32 in ``[-1, 1]``.

        Rendering uses numpy (single-threaded): on small clips torch's intra-op threads cost more than
        the arithmetic, especially on a busy machine.
        """
        coords = self._coords
        frames, res = spec.num_frames, spec.resolution
        background = np.asarray(spec.background_rgb, dtype=np.float32) / np.float32(255.0)
        image = np.broadcast_to(background.reshape(3, 1, 1, 1), (3, frames, res, res)).copy()
        for obj in spec.objects:
            positions = obj.positions.numpy()
            cx = positions[:, 0].reshape(-1, 1, 1)
            cy = positions[:, 1].reshape(-1, 1, 1)
            sdf = _sdf(obj.shape, coords.reshape(1, 1, -1) - cx, coords.reshape(1, -1, 1) - cy, obj.size)
            alpha = np.clip(np.float32(0.5) - sdf, 0.0, 1.0)[None]  # (1, F, R, R)
            color = (np.asarray(obj.color_rgb, dtype=np.float32) / np.float32(255.0)).reshape(3, 1, 1, 1)
            image = image * (np.float32(1.0) - alpha) + color * alpha
        if self.channels == 1:
            luma = np.asarray([0.299, 0.587, 0.114], dtype=np.float32).reshape(3, 1, 1, 1)
            image = (image * luma).sum(axis=0, keepdims=True)
        video = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return video.mul_(2.0).sub_(1.0).clamp_(-1.0, 1.0)

    def render_frames(self, spec: ClipSpec, frames: Sequence[int]) -> torch.Tensor:
        """Render only the given frames of a spec: ``(C, len(frames), R, R)``, equal to those frames of
        :meth:`render`."""
        frames = [int(t) for t in frames]
        if any(not 0 <= t < spec.num_frames for t in frames):
            raise IndexError(f"frames {frames} out of range for a clip of {spec.num_frames} frames")
        objects = tuple(replace(obj, positions=obj.positions[frames]) for obj in spec.objects)
        return self.render(replace(spec, num_frames=len(frames), objects=objects))

    def random_frame(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """One frame of clip ``index``, uniform over its frames: ``((C, 1, R, R), frame number)``. Used for
        image-video joint training (:class:`vidgen.data.joint.JointImageFrames`)."""
        spec = self.describe(index)
        t = int(rng.integers(spec.num_frames))
        return self.render_frames(spec, [t]), t

    def condition_of(self, index: int) -> dict[str, int | str]:
        """What conditions clip ``index``, as :meth:`__getitem__` gives it, without rendering: ``{"label",
        "caption"}``. Used for image-video joint training (each appended image keeps its own clip's)."""
        spec = self.describe(index)
        return {"label": spec.label, "caption": spec.caption}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        spec = self.describe(index)
        return {"video": self.render(spec), "label": spec.label, "caption": spec.caption, "index": spec.index}
