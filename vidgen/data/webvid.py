"""WebVid text-video pairs (Bain et al., "Frozen in Time"): the training data of Latent-Shift (seed 001).

WebVid is distributed as CSV files of Shutterstock preview URLs; the videos are downloaded by the user. The
CSV columns are ``videoid, contentUrl, duration, page_dir, name`` (``name`` is the caption). The layout this
module reads is the one WebVid's own download script (github.com/m-bain/webvid, ``download.py``) writes::

    <root>/results_10M_train.csv               (or results_2M_train.csv: found when data.csv is null)
    <root>/results_10M_val.csv                 (or results_2M_val.csv: data.val_csv=auto; optional)
    <root>/videos/<page_dir>/<videoid>.mp4     (data.videos_dir = videos)

Rows without a ``page_dir`` are skipped, as that script skips them. Only ``videoid``, ``page_dir`` and
``name`` are read.

Decoding, clip sampling (``num_frames`` every ``frame_stride``-th frame from a random start in training,
centred in validation), resizing + centre cropping and the handling of unreadable files are those of
:class:`~vidgen.data.video_folder.VideoFolderDataset`, which :class:`WebVidDataset` extends with the captions:
items are ``{"video": (3, F, R, R) float32 in [-1, 1], "caption": str, "index": int}`` (no ``label``: WebVid
has no classes).

Missing and corrupt videos are counted and reported, never dropped silently:

* missing files (a CSV row whose ``.mp4`` is not on disk, e.g. a URL that no longer downloads) are found
  at construction with ``check_files=True`` (one ``stat`` per row), left out, counted in
  :attr:`WebVidIndex.missing` and reported in one warning with the first names;
  :meth:`WebVidDataModule.report` gives all counts;
* corrupt files are found when read (or at construction with ``probe=True``, which opens every file): the
  dataset counts them (``num_failed_reads``, ``failed_paths``, ``probe_failures``), warns and reads the next
  video instead (see :class:`~vidgen.data.video_folder.VideoFolderDataset`).

Memory: one entry (a path and a caption) per video, a few hundred bytes each; cap the rows with
``max_videos`` (or use the 2.5M CSV) when that matters.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vidgen.config.checks import checked_int
from vidgen.config.errors import ConfigError
from vidgen.data.datamodule import ClipDataModule
from vidgen.data.video_folder import VideoEntry, VideoFolderDataset

__all__ = [
    "WEBVID_COLUMNS",
    "WebVidDataModule",
    "WebVidDataset",
    "WebVidEntry",
    "WebVidIndex",
    "find_train_csv",
    "find_val_csv",
    "read_webvid_csv",
]

#: training CSVs looked for when ``data.csv`` is null, in this order (then any ``results_*_train.csv``)
TRAIN_CSV_NAMES = ("results_10M_train.csv", "results_2M_train.csv")

#: the CSV columns read (the caption is ``name``)
WEBVID_COLUMNS = ("videoid", "page_dir", "name")
#: names shown per warning
_SHOWN = 5


@dataclass(frozen=True)
class WebVidEntry(VideoEntry):
    """A WebVid video: its file (``path``; ``group`` is the ``page_dir``), ``caption`` and ``videoid``."""

    caption: str = ""
    videoid: str = ""


@dataclass
class WebVidIndex:
    """The videos of one CSV file that are on disk, and what was left out.

    Attributes:
        csv: the CSV file read.
        entries: the videos found, in CSV order.
        rows: data rows in the CSV.
        no_page_dir: rows without a ``page_dir`` (skipped, as WebVid's download script does).
        missing: expected file paths of the rows whose video is not on disk (``check_files``).
        capped: rows not read because of ``max_videos``.
    """

    csv: Path
    entries: list[WebVidEntry] = field(default_factory=list)
    rows: int = 0
    no_page_dir: int = 0
    missing: list[str] = field(default_factory=list)
    capped: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "csv": str(self.csv),
            "rows": self.rows,
            "videos": len(self.entries),
            "missing": len(self.missing),
            "no_page_dir": self.no_page_dir,
            "capped": self.capped,
            "missing_examples": self.missing[:_SHOWN],
        }


def _resolve(root: Path, value: str | Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def find_train_csv(root: Path, csv: str | Path | None) -> Path:
    """The training CSV: ``csv`` (relative to ``root`` or absolute) when set, else the first of
    :data:`TRAIN_CSV_NAMES` in ``root``, else the only ``results_*_train.csv`` there.

    Raises:
        ConfigError: (``data.csv``) none found (the message lists what was searched), or several candidates.
    """
    if csv is not None and str(csv).strip() != "":
        return _resolve(root, csv)
    for name in TRAIN_CSV_NAMES:
        if (root / name).is_file():
            return root / name
    others = sorted(root.glob("results_*_train.csv"))
    if len(others) == 1:
        return others[0]
    if others:
        raise ConfigError(
            "data.csv", f"several training CSVs in '{root}': {[p.name for p in others]}; set data.csv to one"
        )
    present = sorted(p.name for p in root.glob("*.csv"))
    raise ConfigError(
        "data.csv",
        f"no WebVid training CSV in '{root}': looked for {', '.join(TRAIN_CSV_NAMES)} and results_*_train.csv"
        f" (CSV files there: {present or 'none'}); set data.csv=<file> (columns videoid, contentUrl, "
        "duration, page_dir, name)",
    )


def find_val_csv(root: Path, train_csv: Path, val_csv: str | Path | None) -> Path | None:
    """The validation CSV: ``auto`` gives the training CSV's sibling with ``_train`` -> ``_val``
    (``results_2M_val.csv`` for ``results_2M_train.csv``) when it exists, else None (hold out
    ``val_fraction``); None or ``""`` gives None; any other value is that file (relative to ``root`` or
    absolute; a missing one fails later naming ``data.val_csv``)."""
    if val_csv is None or str(val_csv).strip() == "":
        return None
    if str(val_csv).strip().lower() != "auto":
        return _resolve(root, val_csv)
    head, found, tail = train_csv.name.rpartition("_train")
    if not found:
        return None
    sibling = train_csv.with_name(f"{head}_val{tail}")
    return sibling if sibling.is_file() else None


def read_webvid_csv(
    csv_path: str | Path,
    videos_root: str | Path,
    check_files: bool = True,
    max_videos: int | None = None,
    key: str = "data.csv",
) -> WebVidIndex:
    """Read a WebVid CSV: one :class:`WebVidEntry` per row whose video ``<videos_root>/<page_dir>/<videoid>.mp4``
    exists (every row when ``check_files`` is false). ``max_videos`` stops after that many videos.

    Raises:
        ConfigError: (naming ``key``) the CSV is missing, lacks a needed column or yields no video.
    """
    csv_path = Path(csv_path).expanduser()
    videos_root = Path(videos_root).expanduser()
    if not csv_path.is_file():
        raise ConfigError(
            key,
            f"WebVid CSV '{csv_path}' does not exist (columns videoid, contentUrl, duration, page_dir, name; "
            "e.g. results_10M_train.csv from the WebVid release)",
        )
    index = WebVidIndex(csv=csv_path)
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        lacking = [c for c in WEBVID_COLUMNS if c not in (reader.fieldnames or [])]
        if lacking:
            raise ConfigError(
                key, f"'{csv_path}' lacks the WebVid columns {lacking} (found {reader.fieldnames})"
            )
        for row in reader:
            index.rows += 1
            if max_videos is not None and len(index.entries) >= max_videos:
                index.capped += 1
                continue
            page_dir = (row["page_dir"] or "").strip()
            videoid = (row["videoid"] or "").strip()
            if not page_dir or page_dir.lower() == "nan" or not videoid:
                index.no_page_dir += 1
                continue
            path = videos_root / page_dir / f"{videoid}.mp4"
            if check_files and not path.is_file():
                index.missing.append(str(path))
                continue
            caption = " ".join((row["name"] or "").split())  # one line, single spaces
            index.entries.append(
                WebVidEntry(
                    path=path, is_frame_folder=False, group=page_dir, caption=caption, videoid=videoid
                )
            )
    if index.missing or index.no_page_dir:
        parts = []
        if index.missing:
            shown = ", ".join(index.missing[:_SHOWN]) + (" ..." if len(index.missing) > _SHOWN else "")
            parts.append(
                f"{len(index.missing)} of the {index.rows} videos are not under '{videos_root}' and are left "
                f"out (e.g. {shown})"
            )
        if index.no_page_dir:
            parts.append(f"{index.no_page_dir} rows have no page_dir and are left out")
        warnings.warn(f"WebVid '{csv_path}': " + "; ".join(parts), stacklevel=2)
    if not index.entries:
        raise ConfigError(
            key,
            f"none of the {index.rows} rows of '{csv_path}' has its video on disk; expected "
            f"'{videos_root}/<page_dir>/<videoid>.mp4' (the layout of WebVid's download script)",
        )
    return index


class WebVidDataset(VideoFolderDataset):
    """Captioned clips of WebVid videos: :class:`~vidgen.data.video_folder.VideoFolderDataset` (decoding, clip
    sampling, cropping, unreadable-file handling) over :class:`WebVidEntry` items, plus each item's
    ``caption``. Items: ``{"video": (3, F, R, R), "caption": str, "index": int}``, where ``index`` is the
    video actually read (the next one when a file is unreadable) and the caption is that video's.

    Args:
        entries: the videos (:func:`read_webvid_csv`).
        root: the videos folder (messages only).
        **kwargs: :class:`~vidgen.data.video_folder.VideoFolderDataset`'s clip options (``num_frames``,
            ``frame_stride``, ``resolution``, ``hflip``, ``random_offset``, ``seed``, ``probe``).
    """

    def __init__(self, entries: Sequence[WebVidEntry], root: str | Path, **kwargs: Any) -> None:
        if not entries:
            raise ConfigError("data.root", f"no WebVid videos selected under '{root}'")
        super().__init__(root=root, entries=list(entries), class_from_folder=False, **kwargs)

    @property
    def has_captions(self) -> bool:
        return True

    def caption(self, index: int) -> str:
        """The caption of video ``index`` (no decoding)."""
        return self.entries[int(index)].caption

    def condition_of(self, index: int) -> dict[str, int | str]:
        """``{"caption"}`` of video ``index`` (no decoding; see :meth:`VideoFolderDataset.condition_of`)."""
        return {"caption": self.caption(index)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = super().__getitem__(index)
        item["caption"] = self.entries[int(item["index"])].caption
        return item


class WebVidDataModule(ClipDataModule):
    """WebVid text-video pairs (see the module docstring for the layout), for text-conditional training.

    The validation split is ``val_csv`` when given or found (WebVid's own ``results_*_val.csv``), else a
    seeded ``val_fraction`` of the training CSV's videos. Validation clips are centred and not flipped; evaluation
    draws its real clips and its captions from the validation split.

    Args:
        root: the WebVid folder (the download script's ``data_dir``).
        csv: training CSV, relative to ``root`` or absolute; None: ``results_10M_train.csv``, else
            ``results_2M_train.csv``, else the one ``results_*_train.csv`` found in ``root``
            (:func:`find_train_csv`).
        val_csv: validation CSV (relative to ``root`` or absolute); ``auto``: the training CSV's ``_val``
            sibling when it exists, else none; None: hold out ``val_fraction`` of ``csv``.
        videos_dir: the videos folder, relative to ``root`` or absolute (``videos``).
        num_frames, frame_stride, resolution: clip sampling (see
            :class:`~vidgen.data.video_folder.VideoFolderDataset`).
        channels: must be 3 (RGB).
        batch_size, num_workers, val_batch_size, drop_last, pin_memory: loader options.
        worker_timeout, worker_start_method: seconds a DataLoader worker may take for a batch before the run
            fails naming ``data.worker_timeout`` (``None``: no limit), and how workers start (``None``:
            Python's default; see :mod:`vidgen.data.worker_options`).
        hflip: random horizontal flips in training (off by default: captions say "left" / "right").
        val_fraction: share of ``csv`` held out when there is no ``val_csv``; in ``(0, 1)``.
        val_max_clips: cap on the validation videos (a seeded subset).
        max_videos: read at most this many videos of ``csv`` (its first ones); None: all.
        check_files: look for every row's file at construction and leave the missing ones out (counted).
        probe: also open every found video at construction (slow; leaves out corrupt ones, counted).
        short_videos: ``skip`` (default) or ``pad`` a training video shorter than a clip (see
            :class:`~vidgen.data.video_folder.VideoFolderDataset`); validation and evaluation clips are padded.
        seed: split, training order and augmentation seed.
        joint_image_frames: ``K`` single frames of other training videos appended to every clip (0 = off).
    """

    def __init__(
        self,
        root: str | Path | None = None,
        csv: str | Path | None = None,
        val_csv: str | Path | None = "auto",
        videos_dir: str | Path = "videos",
        name: str = "webvid",
        num_frames: int = 16,
        frame_stride: int = 4,
        resolution: int | Sequence[int] = 256,
        channels: int = 3,
        batch_size: int = 4,
        num_workers: int = 8,
        hflip: bool = False,
        val_fraction: float = 0.01,
        val_max_clips: int | None = None,
        max_videos: int | None = None,
        check_files: bool = True,
        probe: bool = False,
        short_videos: str = "skip",
        seed: int = 0,
        val_batch_size: int | None = None,
        drop_last: bool = True,
        pin_memory: bool = False,
        joint_image_frames: int = 0,
        cache: str | None = None,
        worker_timeout: float | None = 600.0,
        worker_start_method: str | None = None,
    ) -> None:
        super().__init__(
            batch_size,
            num_workers,
            seed,
            val_batch_size,
            drop_last,
            pin_memory,
            joint_image_frames,
            cache,
            worker_timeout=worker_timeout,
            worker_start_method=worker_start_method,
        )
        self._check_rgb_root(channels, root, "WebVid videos", "the WebVid folder (CSV files + videos/)")
        self.name = name
        self.root = Path(str(root)).expanduser()
        if not self.root.is_dir():
            raise ConfigError(
                "data.root",
                f"'{self.root}' is not a folder; expected the WebVid folder holding the CSV files and "
                f"{videos_dir}/<page_dir>/<videoid>.mp4",
            )
        self.videos_root = _resolve(self.root, videos_dir)
        if not self.videos_root.is_dir():
            raise ConfigError(
                "data.videos_dir", f"'{self.videos_root}' is not a folder (expected <page_dir>/<videoid>.mp4)"
            )
        if max_videos is not None:
            max_videos = checked_int("data.max_videos", max_videos)
        train_csv = find_train_csv(self.root, csv)
        val_csv = find_val_csv(self.root, train_csv, val_csv)
        self.train_index = read_webvid_csv(
            train_csv, self.videos_root, bool(check_files), max_videos, key="data.csv"
        )
        if val_csv is not None:
            self.val_index: WebVidIndex | None = read_webvid_csv(
                _resolve(self.root, val_csv), self.videos_root, bool(check_files), None, key="data.val_csv"
            )
            train_entries, val_entries = self.train_index.entries, self.val_index.entries
        else:
            self.val_index = None
            train_entries, val_entries = self._split(self.train_index.entries, val_fraction, "data.val_csv")
        for index in (self.train_index, self.val_index):
            if index is not None:
                self.missing_videos += [
                    (path, f"a row of {index.csv}, not on disk") for path in index.missing
                ]
        if val_max_clips is not None and checked_int("data.val_max_clips", val_max_clips) < len(val_entries):
            keep = np.random.default_rng([self.seed, 3]).permutation(len(val_entries))[:val_max_clips]
            val_entries = [val_entries[i] for i in sorted(keep.tolist())]
        self.batch_size = self.fitted_batch_size(len(train_entries), f"training videos in '{csv}'")
        self._common = self._clip_options(
            self.videos_root, num_frames, frame_stride, resolution, probe, short_videos
        )
        self.train_set = WebVidDataset(train_entries, hflip=bool(hflip), random_offset=True, **self._common)
        self.val_set = WebVidDataset(
            val_entries, hflip=False, random_offset=False, **self._fixed_clip_options()
        )
        self.training_dataset()  # checks joint_image_frames against the training split

    # ------------------------------------------------------------------------------------ description
    @property
    def has_captions(self) -> bool:
        return True

    def _val_caption(self, index: int) -> str:
        return self.val_set.caption(index)

    def evaluation_dataset(self, num_clips: int) -> WebVidDataset:
        """``num_clips`` real clips for evaluation metrics from the validation split: a seeded permutation of
        its videos, repeated when more clips than videos are asked for (repeats get other seeded offsets);
        no flips."""
        videos = self.val_set.entries
        order = np.random.default_rng([self.seed, 11]).permutation(len(videos))
        entries = [videos[i] for i in np.resize(order, checked_int("num_clips", num_clips))]
        return WebVidDataset(entries, hflip=False, random_offset=True, **self._fixed_clip_options())

    def report(self) -> dict[str, Any]:
        """Counts of what was read and left out: per CSV (rows, videos, missing files, rows without
        ``page_dir``) and per split (videos, corrupt files found by ``probe`` and by reads so far in this
        process, too-short videos found by ``probe`` or skipped by reads so far)."""
        splits = {}
        for split, dataset in (("train", self.train_set), ("val", self.val_set)):
            splits[split] = {
                "videos": len(dataset),
                "probe_failures": len(dataset.probe_failures),
                "failed_reads": dataset.num_failed_reads,
                "too_short": len(dataset.probe_short) + dataset.num_short_skipped,
                "failed_examples": (dataset.probe_failures + dataset.failed_paths)[:_SHOWN],
            }
        indexes = [self.train_index] + ([self.val_index] if self.val_index is not None else [])
        return {"csv": [index.summary() for index in indexes], "splits": splits}
