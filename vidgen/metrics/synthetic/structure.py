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
  mixing line ``background + a (colour - background)`` with ``a >= 0.7`` (so small objects without a fully
  covered pixel still match their colour; real clips have ``a >= 0.85``, dimmer objects do not match).

**Motion** (per track of per-frame centroids, so shuffled frames show): with one object per clip, the track is
the largest plausible blob of each frame that has a plausible object; with several, one track per palette
colour (the largest matching blob of that colour per frame). A centroid is the distance-weighted mean (weight
``|pixel - background|``, i.e. the coverage for one colour) over the blob grown by one pixel, which recovers
the rendered centre of the generator's anti-aliased shapes to a few hundredths of a pixel. A track needs a
centroid in at least ``track_fraction`` of the frames (and >= 3); it is then fitted with each motion kind of the
generator and the best fit's RMS distance (px) is its residual:

* constant velocity with wall bounces, per axis: a line, or a zigzag with one or two elastic bounces at free
  times, each where the object comes within 2 px (plus the distance travelled to the nearest frame) of the frame
  border, alternating between the two borders; per-axis speed at most ``1.5 x`` the largest speed; ``static``
  is the zero-velocity case. (Three bounces on one axis need two full wall-to-wall traversals inside the clip,
  i.e. clips longer than about 30 frames at the default speeds; they are not modelled.)
* ``circle``: ``centre + r (cos, sin)(theta0 + omega t)``, clockwise on screen (``omega > 0``), with ``omega``
  on a grid over ``[0.5, 1.5] x`` the generator's angular-speed range (refined around the best value) and
  ``r`` within ``[0.6, 1.4] x`` its orbit radius range.

With several objects per clip, each plausible blob is first split by nearest palette colour (so touching
objects separate), and frames where a track's object is partly hidden (area under 80% of its median) are left
out of its fit; occlusion still makes real multi-object clips score slightly below 1.

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


def _bounce_times(t: np.ndarray) -> np.ndarray:
    """Candidate bounce times ``(G, 2)`` inside the span of ``t`` (sorted): one bounce on a 1/8-frame grid
    (second column NaN), two bounces on a 1/4-frame grid."""
    ones = np.linspace(t[0], t[-1], round(8 * (t[-1] - t[0])) + 1)[1:-1]
    twos = np.linspace(t[0], t[-1], round(4 * (t[-1] - t[0])) + 1)[1:-1]
    first, second = np.triu_indices(twos.size, k=1)
    a = np.concatenate([ones, twos[first]])
    b = np.concatenate([np.full(ones.size, np.nan), twos[second]])
    return np.stack([a, b], axis=1)


def _refined_bounce_times(t: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """A finer grid of bounce times around one candidate (``(2,)``, second NaN for one bounce)."""
    if np.isnan(apex[1]):
        a = np.linspace(apex[0] - 1 / 8, apex[0] + 1 / 8, 33)
        return np.stack([a, np.full_like(a, np.nan)], axis=1)
    a, b = np.meshgrid(*(np.linspace(x - 1 / 4, x + 1 / 4, 17) for x in apex), indexing="ij")
    keep = a < b
    return np.stack([a[keep], b[keep]], axis=1)


@dataclass
class ClipStructure:
    """What :meth:`StructureAnalyzer.analyse_clip` found in one clip.

    Attributes:
        present: ``(F,)`` bool, frame has a plausible object.
        colours: ``(F,)`` int, palette index of the frame's largest plausible blob (-1: none, or its colour
            matches no palette colour).
        colour_matches: per plausible blob (all frames), whether its colour matches the palette.
        residuals: best-fit RMS residual (px) per track (empty: no track).
        kinds: best-fitting motion kind per track (``"linear"`` or ``"circle"``).
        resolution: frame size ``R``.
    """

    present: np.ndarray
    colours: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    colour_matches: list[bool] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    resolution: int = 0

    def colour_constancy(self) -> float:
        """Fraction of the frames with a plausible object of a palette colour whose main (largest) object has
        the clip's most common such colour: 1.0 when the object keeps its colour, lower when it turns into
        another palette colour part-way; 0.0 when no frame has one (a clip without an identified object colour
        counts as not constant). Frame order does not matter."""
        known = self.colours[self.present & (self.colours >= 0)]
        return float(np.mean(known == np.bincount(known).argmax())) if known.size else 0.0


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
        residual = np.where(alpha >= 0.7, residual, np.inf)
        best = int(np.argmin(residual))
        return best if residual[best] <= self.colour_tolerance else -1

    def _nearest_colours(self, pixels: np.ndarray) -> np.ndarray:
        """Index of the palette mixing line nearest to each ``(..., 3)`` RGB value."""
        offset = pixels - self.background
        lengths = (self.directions**2).sum(axis=1)
        alpha = np.clip(offset @ self.directions.T / lengths, 0.0, 1.0)  # (..., K)
        residual = np.linalg.norm(offset[..., None, :] - alpha[..., None] * self.directions, axis=-1)
        return residual.argmin(axis=-1)

    def _blob(self, frame: np.ndarray, dist: np.ndarray, mask: np.ndarray, free: np.ndarray) -> _Blob:
        """Area, centroid, box and colour of the pixels in ``mask``; the centroid also weighs the ring of
        ``free`` (background) pixels around it, which hold the anti-aliased edge."""
        values = dist[mask]
        core = frame[mask][values >= 0.75 * values.max()]
        grown = ndimage.binary_dilation(mask, structure=_EIGHT) & (free | mask)
        weights = np.where(grown, dist, 0.0)
        total = weights.sum()
        ys, xs = np.nonzero(mask)
        return _Blob(
            area=int(mask.sum()),
            centroid=(
                float((weights.sum(axis=0) * np.arange(weights.shape[1])).sum() / total),
                float((weights.sum(axis=1) * np.arange(weights.shape[0])).sum() / total),
            ),
            bbox=(int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())),
            colour=self._colour_of(core.mean(axis=0)),
        )

    def _frame_blobs(self, frame: np.ndarray, dist: np.ndarray, resolution: int) -> tuple[bool, list[_Blob]]:
        """Whether the frame has a plausible object, and the objects of its plausible blobs (with several
        objects per clip, each blob is split by nearest palette colour, so touching objects separate)."""
        speck, lowest, highest = self.area_bounds(resolution)
        labels, count = ndimage.label(dist > self.threshold, structure=_EIGHT)
        if count == 0:
            return False, []
        areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        kept = [i + 1 for i in range(count) if areas[i] >= speck]
        plausible = [i for i in kept if lowest <= areas[i - 1] <= highest]
        present = 1 <= len(kept) <= self.max_objects and len(plausible) == len(kept)
        free = labels == 0
        blobs = []
        for index in plausible:
            mask = labels == index
            if self.max_objects == 1:
                blobs.append(self._blob(frame, dist, mask, free))
                continue
            nearest = np.where(mask, self._nearest_colours(frame), -1)
            groups = [(nearest == k) for k in np.unique(nearest[mask])]
            parts = [g for g in groups if g.sum() >= speck] or [mask]
            blobs.extend(self._blob(frame, dist, part, free) for part in parts)
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
        """Smallest squared error of elastic bouncing at constant speed on one axis: a line (no bounce) or a
        zigzag ``p = w + s z(t)`` with one or two bounces, each at the frame border (see the module docstring)."""
        # line, speed clamped to vmax
        tc = t - t.mean()
        v = float((tc * (p - p.mean())).sum() / max((tc * tc).sum(), 1e-12))
        v = max(-vmax, min(vmax, v))
        best = float((((p - p.mean()) - v * tc) ** 2).sum())
        if t.size < 3 or t[-1] - t[0] < 1:
            return best
        apexes = _bounce_times(t)
        sse = self._zigzag_errors(t, p, apexes, lows, highs, resolution, vmax)
        index = int(np.argmin(sse))
        if np.isfinite(sse[index]):
            fine = _refined_bounce_times(t, apexes[index])
            refined = self._zigzag_errors(t, p, fine, lows, highs, resolution, vmax)
            best = min(best, float(sse[index]), float(refined.min()))
        return best

    @staticmethod
    def _zigzag_errors(
        t: np.ndarray,
        p: np.ndarray,
        apexes: np.ndarray,
        lows: np.ndarray,
        highs: np.ndarray,
        resolution: int,
        vmax: float,
    ) -> np.ndarray:
        """Squared errors ``(G,)`` of ``p = w + s z(t)``, ``z = |t - a| - 2 max(0, t - b)`` (unit-speed zigzag
        with bounces at ``apexes[:, 0] = a`` and ``apexes[:, 1] = b``, NaN: none); inf where the speed exceeds
        ``vmax`` or a bounce is not at the frame border."""
        a, b = apexes[:, 0], apexes[:, 1]
        zig = np.abs(t[None, :] - a[:, None]) - 2.0 * np.maximum(
            0.0, t[None, :] - np.nan_to_num(b, nan=np.inf)[:, None]
        )
        n = t.size
        sz, szz = zig.sum(axis=1), (zig * zig).sum(axis=1)
        sp, szp = p.sum(), zig @ p
        det = n * szz - sz * sz
        ok = det > 1e-9
        det = np.where(ok, det, 1.0)
        s = (n * szp - sz * sp) / det
        w = (sp - s * sz) / n
        sse = ((w[:, None] + s[:, None] * zig - p[None]) ** 2).sum(axis=1)
        admissible = ok & (np.abs(s) <= vmax)
        # the first apex is a minimum (lower wall) when s > 0; the next one is at the opposite wall
        for k in range(2):
            tau = apexes[:, k]
            has = ~np.isnan(tau)
            tau = np.where(has, tau, t[0])
            nearest = np.abs(t[None, :] - tau[:, None]).argmin(axis=1)
            margin = 2.0 + np.abs(s) * np.abs(t[nearest] - tau)
            lower = (s > 0) if k == 0 else (s < 0)
            at_wall = np.where(lower, lows[nearest] <= margin, highs[nearest] >= resolution - 1 - margin)
            admissible &= at_wall | ~has
        return np.where(admissible, sse, np.inf)

    @staticmethod
    def _orbit_errors(t: np.ndarray, xy: np.ndarray, omegas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Least-squares orbit ``centre + r (cos, sin)(theta0 + omega t)`` for each ``omega``: squared errors
        ``(G,)`` and radii ``(G,)`` (the model is linear in centre, ``r cos theta0``, ``r sin theta0``)."""
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
        return ((fitted - target[None]) ** 2).sum(axis=1), np.hypot(params[:, 2], params[:, 3])

    def _circle_fit(self, t: np.ndarray, xy: np.ndarray, resolution: int) -> float:
        """Smallest squared error of a clockwise orbit with the generator's radius and angular-speed range
        (a coarse grid over ``omega``, then a fine one around the best admissible value)."""
        r_low, r_high, omega_low, omega_high = self._orbit_ranges(resolution)
        coarse = np.linspace(max(0.5 * omega_low, 1e-3), 1.5 * omega_high, 48)

        def errors(omegas: np.ndarray) -> np.ndarray:
            sse, radius = self._orbit_errors(t, xy, omegas)
            return np.where((radius >= 0.6 * r_low) & (radius <= 1.4 * r_high), sse, np.inf)

        sse = errors(coarse)
        best = int(np.argmin(sse))
        if not np.isfinite(sse[best]):
            return math.inf
        step = coarse[1] - coarse[0]
        fine = np.linspace(max(coarse[best] - step, 1e-3), coarse[best] + step, 33)
        return float(min(sse[best], errors(fine).min()))

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
        colours = np.full(frames, -1, dtype=np.int64)
        result = ClipStructure(present=present, colours=colours, resolution=height)
        for f in range(frames):
            present[f], blobs = self._frame_blobs(pixels[f], dist[f], height)
            per_frame.append(blobs)
            result.colour_matches.extend(blob.colour >= 0 for blob in blobs)
            if blobs:
                colours[f] = max(blobs, key=lambda b: b.area).colour
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
            if self.max_objects > 1 and track:  # drop frames where the object is partly hidden
                typical = float(np.median([b.area for _, b in track]))
                track = [(f, b) for f, b in track if b.area >= 0.8 * typical]
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
