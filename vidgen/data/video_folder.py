"""Real videos from a folder tree (UCF101, FaceForensics, SkyTimelapse, Taichi-HD style layouts).

A *video* is either a file with a video extension (decoded with PyAV) or a folder that directly holds frame
images (``.png``/``.jpg``/``.jpeg``, ordered by sorted file name) -- SkyTimelapse and Taichi-HD are shipped
as frame folders. The tree under ``root`` is walked recursively in sorted order, so the video list (and
every index) is deterministic.

Classes (``class_from_folder=True``) are the names of the top-level folders under ``root`` (for the usual
``root/<class>/<video>.avi`` or ``root/<class>/<video>/<frames>.png`` layout this is the video's parent
folder), sorted alphabetically; ``label`` is the position in that list.

A video with fewer frames than a clip spans (``(num_frames - 1) * frame_stride + 1``) is *too short*; the
``short_videos`` policy (``data.short_videos``, :data:`SHORT_VIDEO_POLICIES`) decides what happens to it:
``skip`` (the data modules' default) treats it like an unreadable video (the next video is read instead; counted
and named with the reason ``too short: N frames, needs M``), ``pad`` reads it from frame 0 and repeats its last
frame.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from vidgen.config.checks import checked_frame_size
from vidgen.config.errors import ConfigError
from vidgen.data.bad_videos import BadVideoLog
from vidgen.io.video import VideoReadError, count_frames, read_image, read_video

__all__ = [
    "IMAGE_EXTENSIONS",
    "SHORT_VIDEO_POLICIES",
    "VIDEO_EXTENSIONS",
    "VideoEntry",
    "VideoFolderDataset",
    "VideoTooShort",
    "checked_short_videos",
    "clip_frame_indices",
    "list_videos",
    "resize_center_crop",
    "short_reason",
]

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".webm", ".mov")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
#: how to use more of the videos when many are too short
SHORT_FIX = "lower data.num_frames or data.frame_stride, or set data.short_videos=pad"
#: what ``data.short_videos`` may be: ``skip`` a too-short video like an unreadable one, or ``pad`` its clip
SHORT_VIDEO_POLICIES: tuple[str, ...] = ("skip", "pad")


def checked_short_videos(value: object) -> str:
    """``value`` as a :data:`SHORT_VIDEO_POLICIES` name.

    Raises:
        ConfigError: naming ``data.short_videos`` for any other value.
    """
    policy = str(value).strip().lower()
    if policy not in SHORT_VIDEO_POLICIES:
        raise ConfigError(
            "data.short_videos",
            f"must be one of {', '.join(SHORT_VIDEO_POLICIES)} (what to do with a video shorter than a clip: "
            f"leave it out like an unreadable one, or repeat its last frame), got {value!r}",
        )
    return policy


class VideoTooShort(Exception):
    """A video with fewer frames than a clip spans, skipped under ``short_videos="skip"``."""

    def __init__(self, path: str | Path, count: int, span: int) -> None:
        self.path, self.count, self.span = Path(path), int(count), int(span)
        super().__init__(short_reason(count, span))


def short_reason(count: int, span: int) -> str:
    """The reason recorded for a too-short video: ``too short: N frames, needs M``."""
    return f"too short: {count} frames, needs {span}"


@dataclass(frozen=True)
class VideoEntry:
    """One video under a root.

    Attributes:
        path: the video file, or the folder holding its frames.
        is_frame_folder: True when ``path`` is a folder of frame images.
        group: the top-level folder under the root (the class name when classes come from folders), or
            ``""`` for a video directly under the root.
    """

    path: Path
    is_frame_folder: bool
    group: str


def _frame_files(folder: Path) -> list[Path]:
    """Sorted frame images directly inside ``folder``."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _check_frame_headers(folder: Path) -> None:
    """Open every frame image of ``folder`` far enough to read its header (no decoding; ``probe``).

    Raises:
        VideoReadError: a frame that is not an image, naming it.
    """
    for path in _frame_files(folder):
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018  (the header is parsed on open)
        except (OSError, ValueError) as error:
            raise VideoReadError(folder, f"frame '{path.name}' is not an image ({error})") from error


def list_videos(
    root: str | Path,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    key: str = "data.root",
) -> list[VideoEntry]:
    """Recursively list the videos under ``root`` (files with ``extensions`` and frame folders), sorted.

    Raises:
        ConfigError: (with ``key``) when ``root`` is missing, not a folder, or holds no video.
    """
    root = Path(root).expanduser()
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    expected = (
        f"video files ({', '.join(exts)}) or frame folders (folders of {', '.join(IMAGE_EXTENSIONS)} images)"
    )
    if not root.exists():
        raise ConfigError(key, f"'{root}' does not exist; expected a folder holding {expected}")
    if not root.is_dir():
        raise ConfigError(key, f"'{root}' is not a folder; expected a folder holding {expected}")
    entries: list[VideoEntry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        folder = Path(dirpath)
        relative = folder.relative_to(root).parts
        names = sorted(filenames)
        for name in names:
            if Path(name).suffix.lower() in exts:
                path = folder / name
                group = relative[0] if relative else ""
                entries.append(VideoEntry(path=path, is_frame_folder=False, group=group))
        if any(Path(name).suffix.lower() in IMAGE_EXTENSIONS for name in names):
            group = relative[0] if len(relative) > 1 else ""
            entries.append(VideoEntry(path=folder, is_frame_folder=True, group=group))
    if not entries:
        raise ConfigError(key, f"no {expected} found under '{root}'")
    return sorted(entries, key=lambda e: e.path.as_posix())


def clip_frame_indices(
    num_available: int, num_frames: int, stride: int, rng: np.random.Generator | None
) -> list[int]:
    """Frame indices of one clip: ``num_frames`` frames, every ``stride``-th, from a start offset.

    The offset is uniform over all valid starts when ``rng`` is given, else the centred start. A video
    shorter than the span ``(num_frames - 1) * stride + 1`` starts at 0 and is padded by repeating its last
    frame (indices are clamped to ``num_available - 1``).
    """
    span = (num_frames - 1) * stride + 1
    slack = max(0, num_available - span)
    offset = int(rng.integers(slack + 1)) if rng is not None else slack // 2
    return [min(offset + k * stride, max(0, num_available - 1)) for k in range(num_frames)]


def resize_center_crop(frames: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize (bilinear, anti-aliased, aspect kept) so the frame covers ``size``, then centre-crop it.

    Args:
        frames: uint8 ``(F, H, W, C)``.
        size: ``(height, width)`` of the output, or one side for a square (the short side resized to it).

    Returns:
        float32 ``(C, F, height, width)`` in ``[-1, 1]``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    video = frames.permute(0, 3, 1, 2).float()  # (F, C, H, W)
    h, w = video.shape[-2:]
    scale = max(out_h / h, out_w / w)  # the smallest scale at which the frame covers the output
    resized = (max(out_h, round(h * scale)), max(out_w, round(w * scale)))
    if resized != (h, w):
        video = F.interpolate(video, size=resized, mode="bilinear", antialias=True, align_corners=False)
    top = (resized[0] - out_h) // 2
    left = (resized[1] - out_w) // 2
    video = video[:, :, top : top + out_h, left : left + out_w]
    return video.div(127.5).sub(1.0).clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()


class VideoFolderDataset(Dataset):
    """Fixed-length clips from the videos under ``root``.

    Items are ``{"video": (C, F, H, W) float32 in [-1, 1], "label": int (only with class_from_folder),
    "index": int}`` with ``C = 3``, ``F = num_frames`` and ``(H, W)`` from ``resolution``.

    A clip takes ``num_frames`` frames every ``frame_stride``-th frame. With ``random_offset`` the start is
    drawn from ``(seed, epoch, index)`` (call :meth:`set_epoch`; :class:`vidgen.data.loader.ResumableDataLoader`
    does it), otherwise the clip is centred (evaluation). A video shorter than the span is skipped like an
    unreadable one with ``short_videos="skip"`` (counted in ``num_short_skipped``), or read from frame 0 and
    padded by repeating its last frame with ``"pad"``. ``hflip`` mirrors a clip with probability 1/2, drawn from
    the same seed.

    Unreadable or corrupt videos are never dropped silently: with ``probe=True`` every video is opened at
    construction, the failures are left out with one warning giving their count and first names (see
    ``probe_failures``) and videos shorter than a clip's span are counted in a second warning (and left out
    too with ``short_videos="skip"``, see ``probe_short``); at read time a
    failing video is counted in ``num_failed_reads`` (per process: each DataLoader worker counts its own) and
    the next index is returned instead (so the item's ``"index"`` is the index actually read). Standalone, each
    failed read warns; with a :class:`~vidgen.data.bad_videos.BadVideoLog` attached
    (:meth:`attach_bad_video_log`, done by training) unreadable and too-short videos are recorded there
    instead, merged over all workers and reported once per epoch.

    Args:
        root: folder to walk (ignored when ``entries`` is given, except in messages).
        num_frames: frames per clip (>= 1).
        frame_stride: take every ``frame_stride``-th frame (>= 1).
        resolution: output side (short side resized to it, then a centred square crop) or ``[H, W]`` (resized
            to cover ``H x W`` with the aspect kept, then centre-cropped).
        class_from_folder: emit ``label`` from the top-level folder under ``root``.
        extensions: video file extensions to list.
        hflip: random horizontal flip.
        random_offset: random clip start (training) instead of the centred start.
        seed: base seed of the per-item randomness.
        entries: use these videos instead of listing ``root`` (the data module passes split subsets).
        classes: class names (sorted) when ``class_from_folder``; default: the groups found in ``entries``.
        probe: open every video at construction (slow for big datasets) to exclude unreadable ones early.
        short_videos: ``skip`` or ``pad`` a video shorter than a clip (module docstring). The default here is
            ``pad`` (a standalone folder, e.g. evaluation's ``real_dir``, reads every video); the data modules pass
            ``data.short_videos`` (default ``skip``).
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 16,
        frame_stride: int = 1,
        resolution: int | Sequence[int] = 64,
        class_from_folder: bool = False,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        hflip: bool = False,
        random_offset: bool = True,
        seed: int = 0,
        entries: Sequence[VideoEntry] | None = None,
        classes: Sequence[str] | None = None,
        probe: bool = False,
        short_videos: str = "pad",
    ) -> None:
        super().__init__()
        if int(num_frames) < 1:
            raise ConfigError("data.num_frames", f"must be >= 1, got {num_frames}")
        if int(frame_stride) < 1:
            raise ConfigError("data.frame_stride", f"must be >= 1, got {frame_stride}")
        if int(seed) < 0:
            raise ConfigError("data.seed", f"must be >= 0, got {seed}")
        self.root = Path(root).expanduser()
        self.num_frames = int(num_frames)
        self.frame_stride = int(frame_stride)
        self.frame_size = checked_frame_size("data.resolution", resolution)
        self.class_from_folder = bool(class_from_folder)
        self.hflip = bool(hflip)
        self.random_offset = bool(random_offset)
        self.seed = int(seed)
        self.short_videos = checked_short_videos(short_videos)
        self.epoch = 0
        self.entries = list(entries) if entries is not None else list_videos(self.root, extensions)
        if not self.entries:
            raise ConfigError("data.root", f"no videos selected under '{self.root}'")
        self.class_names: list[str] = []
        if self.class_from_folder:
            self.class_names = (
                sorted(classes) if classes is not None else sorted({e.group for e in self.entries})
            )
            loose = [e.path for e in self.entries if e.group == "" or e.group not in self.class_names]
            if loose:
                raise ConfigError(
                    "data.class_from_folder",
                    f"{len(loose)} videos are not inside a known class folder of '{self.root}' (e.g. "
                    f"'{loose[0]}'); expected root/<class>/<video> with classes {self.class_names}",
                )
        self._frame_counts: dict[int, int] = {}
        #: (path, reason) of every video ``probe`` found unreadable (left out)
        self.probe_unreadable: list[tuple[str, str]] = []
        #: (path, reason) of every video ``probe`` found too short (left out with ``short_videos="skip"``)
        self.probe_short: list[tuple[str, str]] = []
        if probe:
            self._probe()
        lookup = {name: i for i, name in enumerate(self.class_names)}
        self._labels = [lookup[e.group] for e in self.entries] if self.class_from_folder else []
        self.num_failed_reads = 0
        self.failed_paths: list[str] = []
        #: too-short videos skipped at read time in this process (``short_videos="skip"``), and their paths
        self.num_short_skipped = 0
        self.short_paths: list[str] = []
        #: where bad videos are recorded across processes (set by the data module); None: warn per read
        self.bad_video_log: BadVideoLog | None = None

    @property
    def probe_failures(self) -> list[str]:
        """``"<path> (<reason>)"`` for every video ``probe`` left out as unreadable."""
        return [f"{path} ({reason})" for path, reason in self.probe_unreadable]

    @property
    def span(self) -> int:
        """Frames one clip covers: ``(num_frames - 1) * frame_stride + 1``; a video with fewer is too short."""
        return (self.num_frames - 1) * self.frame_stride + 1

    def attach_bad_video_log(self, log: BadVideoLog | None) -> None:
        """Record unreadable and too-short videos in ``log`` (instead of a warning per failed read) and put
        what ``probe`` found there."""
        self.bad_video_log = log
        if log is None:
            return
        for path, reason in self.probe_unreadable:
            log.record("unreadable", path, reason)
        for path, reason in self.probe_short:
            log.record("too_short", path, reason)

    # ------------------------------------------------------------------------------------------- info
    @property
    def num_classes(self) -> int:
        """Number of classes (0 without ``class_from_folder``)."""
        return len(self.class_names)

    @property
    def labels(self) -> list[int]:
        """Label of every item (empty without ``class_from_folder``); no decoding needed."""
        return self._labels

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random offsets / flips are drawn."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    # ---------------------------------------------------------------------------------------- reading
    def _num_available(self, entry: VideoEntry) -> int:
        if entry.is_frame_folder:
            return len(_frame_files(entry.path))
        return count_frames(entry.path)

    def _probe(self) -> None:
        kept: list[VideoEntry] = []
        for entry in self.entries:
            try:
                if entry.is_frame_folder:
                    _check_frame_headers(entry.path)
                count = self._num_available(entry)
                if count < 1:
                    raise VideoReadError(entry.path, "no frames")
            except (VideoReadError, OSError) as error:
                self.probe_unreadable.append((str(entry.path), str(error)))
                continue
            if count < self.span:
                self.probe_short.append((str(entry.path), self._short_reason(count)))
                if self.short_videos == "skip":
                    continue
            self._frame_counts[len(kept)] = count
            kept.append(entry)
        if self.probe_short:
            done = "left out" if self.short_videos == "skip" else "their clips repeat the last frame"
            warnings.warn(
                f"VideoFolderDataset: {len(self.probe_short)} of {len(self.entries) - len(self.probe_unreadable)} "
                f"readable videos under '{self.root}' have fewer than {self.span} frames "
                f"(num_frames={self.num_frames}, frame_stride={self.frame_stride}); data.short_videos="
                f"{self.short_videos}: {done}",
                stacklevel=3,
            )
        failures = self.probe_failures
        if failures:
            shown = "; ".join(failures[:5])
            warnings.warn(
                f"VideoFolderDataset: {len(failures)} of {len(self.entries)} videos under "
                f"'{self.root}' are unreadable and left out: {shown}" + (" ..." if len(failures) > 5 else ""),
                stacklevel=3,
            )
        if not kept:
            raise ConfigError(
                "data.root",
                f"none of the {len(self.entries)} videos under '{self.root}' is usable: "
                f"{len(self.probe_unreadable)} unreadable, {len(self.probe_short)} shorter than {self.span} frames"
                + (f" ({SHORT_FIX})" if self.probe_short else ""),
            )
        self.entries = kept

    def _short_reason(self, count: int) -> str:
        """``too short: N frames, needs M`` (plus ``; padded`` under ``short_videos="pad"``)."""
        return short_reason(count, self.span) + (
            "; padded with its last frame" if self.short_videos == "pad" else ""
        )

    def _read_frames(self, entry: VideoEntry, indices: list[int]) -> torch.Tensor:
        """uint8 ``(F, H, W, 3)`` frames at ``indices``."""
        if not entry.is_frame_folder:
            return read_video(entry.path, indices)
        files = _frame_files(entry.path)
        if not files:
            raise VideoReadError(entry.path, "frame folder holds no images")
        decoded: dict[int, torch.Tensor] = {}
        for i in sorted(set(indices)):
            try:
                decoded[i] = read_image(files[min(i, len(files) - 1)])
            except VideoReadError as error:
                raise VideoReadError(entry.path, f"frame '{error.path.name}': {error.reason}") from error
        shapes = {tuple(f.shape) for f in decoded.values()}
        if len(shapes) > 1:
            raise VideoReadError(entry.path, f"frames have different sizes {sorted(shapes)}")
        return torch.stack([decoded[i] for i in indices])

    def _load(self, index: int) -> torch.Tensor:
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        available = self._frame_counts.get(index)
        if available is None:
            available = self._num_available(entry)
        if available < self.span:
            if self.short_videos == "skip":
                raise VideoTooShort(entry.path, available, self.span)
            if self.bad_video_log is not None:
                self.bad_video_log.record("too_short", entry.path, self._short_reason(available))
        indices = clip_frame_indices(
            available, self.num_frames, self.frame_stride, rng if self.random_offset else None
        )
        video = resize_center_crop(self._read_frames(entry, indices), self.frame_size)
        flipped = bool(self.hflip and rng.random() < 0.5)
        if flipped:
            video = video.flip(-1)
        #: ``(index, frame indices, flipped)`` of the clip this process read last (a precomputed cache
        #: records them, :mod:`vidgen.data.latent_cache`)
        self.last_clip = (index, indices, flipped)
        return video

    def _note_failed_read(self, entry: VideoEntry, error: Exception) -> None:
        self.num_failed_reads += 1
        self.failed_paths.append(str(entry.path))
        if self.bad_video_log is not None:  # reported once per epoch by vidgen.data.bad_videos.BadVideoReport
            self.bad_video_log.record("unreadable", entry.path, str(error))
            return
        warnings.warn(
            f"VideoFolderDataset: skipping unreadable video ({error}); "
            f"{self.num_failed_reads} failed reads so far in this process",
            stacklevel=3,
        )

    def _note_short(self, entry: VideoEntry, error: VideoTooShort) -> None:
        self.num_short_skipped += 1
        self.short_paths.append(str(entry.path))
        if self.bad_video_log is not None:  # reported once per epoch, like the unreadable ones
            self.bad_video_log.record("too_short", entry.path, str(error))
            return
        warnings.warn(
            f"VideoFolderDataset: skipping '{entry.path}' ({error}; data.short_videos=skip); "
            f"{self.num_short_skipped} too-short videos skipped so far in this process",
            stacklevel=3,
        )

    def random_frame(self, index: int, rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        """One frame of video ``index``, uniform over all its frames, resized and cropped like a clip (and
        mirrored with probability 1/2 when ``hflip``): ``((3, 1, R, R), frame number)``. Used for
        image-video joint training (:class:`vidgen.data.joint.JointImageFrames`).

        Raises:
            VideoReadError, OSError: the video cannot be read (counted in ``num_failed_reads``).
        """
        entry = self.entries[int(index)]
        try:
            available = self._frame_counts.get(int(index))
            if available is None:
                available = self._num_available(entry)
            t = int(rng.integers(max(1, available)))
            frame = resize_center_crop(self._read_frames(entry, [t]), self.frame_size)
        except (VideoReadError, OSError) as error:
            self._note_failed_read(entry, error)
            raise
        if self.hflip and rng.random() < 0.5:
            frame = frame.flip(-1)
        return frame, t

    def condition_of(self, index: int) -> dict[str, int | str]:
        """What conditions video ``index``, as :meth:`__getitem__` gives it, without decoding: ``{"label"}``
        with ``class_from_folder``, else nothing. Used for image-video joint training (each appended image
        keeps its own video's condition)."""
        return {"label": self._labels[int(index)]} if self.class_from_folder else {}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        for attempt in range(len(self)):
            current = (index + attempt) % len(self)
            entry = self.entries[current]
            try:
                video = self._load(current)
            except VideoTooShort as error:
                self._note_short(entry, error)
                continue
            except (VideoReadError, OSError) as error:
                self._note_failed_read(entry, error)
                continue
            item: dict[str, torch.Tensor | int] = {"video": video, "index": current}
            if self.class_from_folder:
                item["label"] = self._labels[current]
            return item
        raise RuntimeError(
            f"none of the {len(self)} videos under '{self.root}' could be read"
            + (
                f" ({self.num_short_skipped} too short for {self.span} frames: {SHORT_FIX})"
                if self.num_short_skipped
                else ""
            )
        )
