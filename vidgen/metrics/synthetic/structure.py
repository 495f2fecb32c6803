"""Checks of generated clips against the synthetic generator's known structure (no learned weights).

The generator (:mod:`vidgen.data.synthetic`) draws ``min_objects ... max_objects`` objects of known size range
and palette colours on a flat background and moves each one in one of a few ways. :class:`StructureAnalyzer`
measures, per clip:

**Frames** (each frame on its own, so the results do not depend on frame order):

* foreground = pixels whose RGB distance from the background colour exceeds ``foreground`` times the smallest
  palette-to-background distance (``0.5``: at least half covered by the dimmest colour);
* blobs = 8-connected foreground components; blobs under ``0.25 x`` the smallest object area are specks and
  ignored; a blob is *plausible* when its area lies in ``[0.5 x smallest, 1.5 x largest object area + edge
  ring]`` (``x max_objects`` at the top, as overlapping objects merge);
* a frame *has a plausible object* when it has between 1 and ``max_objects`` non-speck blobs and all of them
  are plausible;
* a plausible blob's colour *matches* when the mean colour of its core (pixels at least 75% as far from the
  background as its farthest pixel) lies within ``colour_tolerance`` (RGB units, 0-255) of a palette colour's
  mixing line ``background + a (colour - background)`` with ``a >= 0.5`` (so partly covered edge pixels and
  small objects without a fully covered pixel still match their colour).

**Motion** (per track of per-frame centroids, so shuffled frames show): with one object per clip, the track is
the largest plausible blob of each frame that has a plausible object; with several, one track per palette
colour (the largest matching blob of that colour per frame). A centroid is the distance-weighted mean (weight
``|pixel - background|``, i.e. the coverage for one colour) over the blob grown by one pixel, which recovers
the rendered centre of the generator's anti-aliased shapes to a few hundredths of a pixel. A track needs a
centroid in at least ``track_fraction`` of the frames (and >= 3); it is then fitted with each motion kind of the
generator and the best fit's RMS distance (px) is its residual:

* constant velocity with wall bounces, per axis: a line, or a "V" (one elastic bounce at a free time) whose
  apex lies where the object touches the frame border; per-axis speed at most ``1.5 x`` the largest speed;
  ``static`` is the zero-velocity case. (Two bounces on one axis in one clip need more than two wall-to-wall
  traversals, i.e. clips longer than about 20 frames at the default speeds; they are not modelled.)
* ``circle``: ``centre + r (cos, sin)(theta0 + omega t)``, clockwise on screen (``omega > 0``), with ``omega``
  on a grid over ``[0.5, 1.5] x`` the generator's angular-speed range and ``r`` within ``[0.6, 1.4] x`` its
  orbit radius range.

A track is *consistent* when its residual is at most ``motion_tolerance x R`` pixels (``R`` = frame size).
Clips without any track count as one inconsistent track.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from vidgen.data.synthetic import PALETTE

__all__ = ["ClipStructure", "StructureAnalyzer"]

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class ClipStructure:
    """What :meth:`StructureAnalyzer.analyse_clip` found in one clip.

    Attributes:
        present: ``(F,)`` bool, frame has a plausible object.
        colour_matches: per plausible blob (all frames), whether its colour matches the palette.
        residuals: best-fit RMS residual (px) per track (empty: no track).
        kinds: best-fitting motion kind per track (``"linear"`` or ``"circle"``).
        resolution: frame size ``R``.
    """

    present: np.ndarray
    colour_matches: list[bool] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    resolution: int = 0


@dataclass
class _Blob:
    area: int
    centroid: tuple[float, float]  # (x, y)
    bbox: tuple[int, int, int, int]  # (x_min, x_max, y_min, y_max), inclusive
    colour: int  # palette index, -1 when the colour matches none


class StructureAnalyzer:
    """Frame and motion structure of synthetic-style clips (see the module docstring).

    Args:
        background: background RGB (0-255) of the generator.
        colors: palette colour names the generator uses (default all of :data:`PALETTE`).
        object_size: ``[min, max]`` object extent as a fraction of the frame size (generator's ``object_size``).
        speed: ``[min, max]`` speed as a fraction of the frame size per frame (generator's ``speed``).
        max_objects: most objects per clip (generator's ``max_objects``).
        foreground: foreground threshold, as a fraction of the smallest palette-to-background distance.
        colour_tolerance: largest distance (RGB units) of a blob's core colour from a palette mixing line.
        motion_tolerance: largest consistent residual, as a fraction of the frame size.
        track_fraction: fraction of frames a track needs.
    """

    def __init__(
        self,
        background: Sequence[int] = (8, 8, 12),
        colors: Sequence[str] | None = None,
        object_size: Sequence[float] = (0.3, 0.4),
        speed: Sequence[float] = (0.03, 0.06),
        max_objects: int = 1,
        foreground: float = 0.5,
        colour_tolerance: float = 40.0,
        motion_tolerance: float = 0.02,
        track_fraction: float = 0.75,
    ) -> None:
        names = list(PALETTE) if colors is None else [str(c) for c in colors]
        unknown = [n for n in names if n not in PALETTE]
        if unknown or not names:
            raise ValueError(f"synthetic structure: unknown colours {unknown}; palette: {list(PALETTE)}")
        self.background = np.asarray(background, dtype=np.float64).reshape(3)
        self.colour_names = names
        self.directions = (
            np.asarray([PALETTE[n] for n in names], dtype=np.float64) - self.background
        )  # (K, 3)
        self.size_range = (float(object_size[0]), float(object_size[1]))
        self.speed_range = (float(speed[0]), float(speed[1]))
        self.max_objects = int(max_objects)
        if self.max_objects < 1:
            raise ValueError(f"synthetic structure: max_objects must be >= 1, got {max_objects}")
        self.threshold = float(foreground) * float(np.linalg.norm(self.directions, axis=1).min())
        self.colour_tolerance = float(colour_tolerance)
        self.motion_tolerance = float(motion_tolerance)
        self.track_fraction = float(track_fraction)

    # ------------------------------------------------------------------------------------------- frames
    def area_bounds(self, resolution: int) -> tuple[float, float, float]:
        """``(speck, lowest, highest)`` blob areas (px) at frame size ``resolution``."""
        small = self.size_range[0] * resolution
        large = self.size_range[1] * resolution
        smallest = math.sqrt(3.0) / 4.0 * small * small  # triangle of the smallest size
        largest = large * large  # square of the largest size
        ring = 2.0 * large  # half a pixel around a square's perimeter (bright colours threshold lower)
        return 0.25 * smallest, 0.5 * smallest, (1.5 * largest + ring) * self.max_objects

    def _colour_of(self, core_mean: np.ndarray) -> int:
        """Palette index whose mixing line passes within tolerance of ``core_mean`` (RGB), else -1."""
        offset = core_mean - self.background
        lengths = (self.directions**2).sum(axis=1)
        alpha = np.clip(self.directions @ offset / lengths, 0.0, 1.0)
        residual = np.linalg.norm(offset[None] - alpha[:, None] * self.directions, axis=1)
        residual = np.where(alpha >= 0.5, residual, np.inf)
        best = int(np.argmin(residual))
        return best if residual[best] <= self.colour_tolerance else -1

    def _frame_blobs(self, frame: np.ndarray, dist: np.ndarray, resolution: int) -> tuple[bool, list[_Blob]]:
        """Whether the frame has a plausible object, and its plausible blobs."""
        speck, lowest, highest = self.area_bounds(resolution)
        labels, count = ndimage.label(dist > self.threshold, structure=_EIGHT)
        if count == 0:
            return False, []
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        kept = [i + 1 for i in range(count) if areas[i] >= speck]
        plausible = [i for i in kept if lowest <= areas[i - 1] <= highest]
        present = 1 <= len(kept) <= self.max_objects and len(plausible) == len(kept)
        blobs = []
        for index in plausible:
            mask = labels == index
            values = dist[mask]
            core = frame[mask][values >= 0.75 * values.max()]
            grown = ndimage.binary_dilation(mask, structure=_EIGHT) & ((labels == 0) | mask)
            weights = np.where(grown, dist, 0.0)
            total = weights.sum()
            ys, xs = np.nonzero(mask)
            centroid = (
                float((weights.sum(axis=0) * np.arange(weights.shape[1])).sum() / total),
                float((weights.sum(axis=1) * np.arange(weights.shape[0])).sum() / total),
            )
            blobs.append(
                _Blob(
                    area=int(areas[index - 1]),
                    centroid=centroid,
                    bbox=(int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())),
                    colour=self._colour_of(core.mean(axis=0)),
                )
            )
        return present, blobs

    # ------------------------------------------------------------------------------------------- motion
    def _orbit_ranges(self, resolution: int) -> tuple[float, float, float, float]:
        """``(r_low, r_high, omega_low, omega_high)`` of the generator's circular motion."""
        r_high = 0.15 * resolution
        room = (resolution - 1 - self.size_range[1] * resolution) / 2.0
        r_low = max(0.5, min(r_high, room))
        omega_low = self.speed_range[0] * resolution / r_high
        omega_high = self.speed_range[1] * resolution / r_low
        return r_low, r_high, omega_low, omega_high

    def _axis_fit(
        self, t: np.ndarray, p: np.ndarray, lows: np.ndarray, highs: np.ndarray, resolution: int, vmax: float
    ) -> float:
        """Smallest squared error of a line or a one-bounce "V" on one axis (see the module docstring)."""
        n = t.size
        # line, speed clamped to vmax
        tc = t - t.mean()
        v = float((tc * (p - p.mean())).sum() / max((tc * tc).sum(), 1e-12))
        v = max(-vmax, min(vmax, v))
        best = float((((p - p.mean()) - v * tc) ** 2).sum())
        if n < 3:
            return best
        # V: p = w + s |t - tau|, tau strictly inside the observed time span
        taus = np.linspace(t[0], t[-1], int(8 * (t[-1] - t[0])) + 1)[1:-1]
        if taus.size == 0:
            return best
        a = np.abs(t[None, :] - taus[:, None])  # (G, n)
        sa, saa = a.sum(axis=1), (a * a).sum(axis=1)
        sp, sap = p.sum(), (a * p[None]).sum(axis=1)
        det = n * saa - sa * sa
        ok = det > 1e-9
        det = np.where(ok, det, 1.0)
        s = (n * sap - sa * sp) / det
        w = (sp - s * sa) / n
        sse = ((w[:, None] + s[:, None] * a - p[None]) ** 2).sum(axis=1)
        nearest = np.abs(t[None, :] - taus[:, None]).argmin(axis=1)
        gap = np.abs(t[nearest] - taus)
        margin = 1.0 + np.abs(s) * gap
        at_wall = np.where(s > 0, lows[nearest] <= margin, highs[nearest] >= resolution - 1 - margin)
        admissible = ok & (np.abs(s) <= vmax) & at_wall
        if admissible.any():
            best = min(best, float(sse[admissible].min()))
        return best

    def _circle_fit(self, t: np.ndarray, xy: np.ndarray, resolution: int) -> float:
        """Smallest squared error of a clockwise orbit with the generator's radius and angular-speed range."""
        r_low, r_high, omega_low, omega_high = self._orbit_ranges(resolution)
        omegas = np.linspace(max(0.5 * omega_low, 1e-3), 1.5 * omega_high, 96)
        cos = np.cos(omegas[:, None] * t[None])  # (G, n)
        sin = np.sin(omegas[:, None] * t[None])
        ones, zeros = np.ones_like(cos), np.zeros_like(cos)
        # rows for x: [1, 0, cos, -sin]; rows for y: [0, 1, sin, cos]; parameters (cx, cy, A, B)
        design = np.concatenate(
            [np.stack([ones, zeros, cos, -sin], axis=2), np.stack([zeros, ones, sin, cos], axis=2)], axis=1
        )  # (G, 2n, 4)
        target = np.concatenate([xy[:, 0], xy[:, 1]])  # (2n,)
        params = np.linalg.pinv(design) @ target  # (G, 4)
        fitted = np.einsum("gij,gj->gi", design, params)
        sse = ((fitted - target[None]) ** 2).sum(axis=1)
        radius = np.hypot(params[:, 2], params[:, 3])
        admissible = (radius >= 0.6 * r_low) & (radius <= 1.4 * r_high)
        return float(sse[admissible].min()) if admissible.any() else math.inf

    def fit_track(
        self, t: np.ndarray, xy: np.ndarray, bbox: np.ndarray, resolution: int
    ) -> tuple[float, str]:
        """Best-fit RMS residual (px) and motion kind of a track: times ``(n,)``, centroids ``(n, 2)``,
        bounding boxes ``(n, 4)`` (x_min, x_max, y_min, y_max)."""
        t = np.asarray(t, dtype=np.float64)
        xy = np.asarray(xy, dtype=np.float64)
        vmax = 1.5 * self.speed_range[1] * resolution + 0.1
        linear = self._axis_fit(t, xy[:, 0], bbox[:, 0], bbox[:, 1], resolution, vmax) + self._axis_fit(
            t, xy[:, 1], bbox[:, 2], bbox[:, 3], resolution, vmax
        )
        circle = self._circle_fit(t, xy, resolution)
        kind, sse = ("linear", linear) if linear <= circle else ("circle", circle)
        return math.sqrt(sse / t.size), kind

    # --------------------------------------------------------------------------------------------- clips
    def analyse_clip(self, video: np.ndarray) -> ClipStructure:
        """Analyse one uint8 ``(F, R, R, 3)`` clip."""
        frames, height, width, _ = video.shape
        if height != width:
            raise ValueError(f"synthetic structure: frames must be square, got {height}x{width}")
        pixels = video.astype(np.float64)
        dist = np.linalg.norm(pixels - self.background, axis=-1)  # (F, R, R)
        present = np.zeros(frames, dtype=bool)
        per_frame: list[list[_Blob]] = []
        result = ClipStructure(present=present, resolution=height)
        for f in range(frames):
            present[f], blobs = self._frame_blobs(pixels[f], dist[f], height)
            per_frame.append(blobs)
            result.colour_matches.extend(blob.colour >= 0 for blob in blobs)
        if frames < 3:
            return result
        needed = max(3, math.ceil(self.track_fraction * frames))
        tracks: list[list[tuple[int, _Blob]]] = []
        if self.max_objects == 1:
            tracks.append(
                [(f, max(blobs, key=lambda b: b.area)) for f, blobs in enumerate(per_frame) if present[f]]
            )
        else:
            colours = sorted({b.colour for blobs in per_frame for b in blobs if b.colour >= 0})
            for colour in colours:
                track = []
                for f, blobs in enumerate(per_frame):
                    mine = [b for b in blobs if b.colour == colour]
                    if mine:
                        track.append((f, max(mine, key=lambda b: b.area)))
                tracks.append(track)
        for track in tracks:
            if len(track) < needed:
                continue
            t = np.asarray([f for f, _ in track], dtype=np.float64)
            xy = np.asarray([b.centroid for _, b in track], dtype=np.float64)
            bbox = np.asarray([b.bbox for _, b in track], dtype=np.float64)
            residual, kind = self.fit_track(t, xy, bbox, height)
            result.residuals.append(residual)
            result.kinds.append(kind)
        return result

    def consistent(self, residual: float, resolution: int) -> bool:
        """Whether a track's residual is within the motion tolerance."""
        return residual <= self.motion_tolerance * resolution
