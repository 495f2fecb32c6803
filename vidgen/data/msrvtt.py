"""MSR-VTT (Xu et al. 2016): 10,000 web clips with 20 captions each, the zero-shot text-to-video benchmark of
Latent-Shift (seed 001) and CMD (seed 003).

Annotations (``data.annotations``, relative to ``data.root`` or absolute):

* the 2016 release's ``train_val_videodatainfo.json`` (7,010 videos: ``split`` ``train`` 6,513 and
  ``validate`` 497) plus ``test_videodatainfo.json`` (2,990 ``test`` videos) when it lies next to it; or one
  JSON holding all three splits (``MSRVTT_data.json`` of the CLIP4Clip packaging). Each is
  ``{"videos": [{"video_id": "video0", "split": "train", ...}], "sentences": [{"video_id": "video0",
  "caption": "..."}, ...]}``.
* ``data.protocol=1k-A`` (Yu et al. 2018, "JSFusion"): ``MSRVTT_train.9k.csv`` (column ``video_id``) trains,
  ``MSRVTT_JSFUSION_test.csv`` (``video_id``, ``sentence``) is both validation and test; the captions of
  the training videos come from the JSON.

Videos are found by name anywhere under ``root`` (``<video_id>.mp4``: the release's ``TrainValVideo/`` and
``TestVideo/``, or CLIP4Clip's ``videos/all/``). Annotated videos that are not on disk are counted as
missing and left out.

Captions: training draws one of the video's captions per sample (seeded by ``(seed, epoch, index)``, so a
resumed run draws the same); validation, sampling and evaluation use a fixed one, the **first** caption of
the annotation file (1k-A: the test CSV's sentence). ``eval_captions=all`` makes the evaluation clips one per
(video, caption) pair instead, the protocol of Make-A-Video and Latent-Shift ("we use all the captions in the
test set", 59,800 captions for the 2,990 test videos).
"""

from __future__ import annotations

import csv as csv_module
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vidgen.config.checks import checked_choice, checked_int
from vidgen.config.errors import ConfigError
from vidgen.data.datamodule import ClipDataModule
from vidgen.data.video_folder import VideoEntry, VideoFolderDataset

__all__ = ["MSRVTTDataModule", "MSRVTTDataset", "MSRVTTEntry", "read_msrvtt_annotations"]

#: ``data.protocol`` values
PROTOCOLS = ("2016", "1k-A")
#: split names of the JSON files, mapped to vidgen's
_SPLIT_NAMES = {"train": "train", "validate": "val", "val": "val", "test": "test"}


@dataclass(frozen=True)
class MSRVTTEntry(VideoEntry):
    """An MSR-VTT video: its file, ``video_id`` and all its ``captions`` (annotation order)."""

    video_id: str = ""
    captions: tuple[str, ...] = ()


def _load_json(path: Path, key: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(
            key,
            f"'{path}' does not exist; expected MSR-VTT's train_val_videodatainfo.json (or MSRVTT_data.json)",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(key, f"'{path}' is not valid JSON: {error}") from None
    if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
        raise ConfigError(key, f"'{path}' lacks the MSR-VTT lists 'videos' and 'sentences'")
    return data


def read_msrvtt_annotations(path: str | Path, key: str = "data.annotations") -> tuple[dict[str, str], dict]:
    """``({video_id: split}, {video_id: [captions]})`` from ``path`` and, when present beside it,
    ``test_videodatainfo.json``; splits are ``train`` / ``val`` / ``test``.

    Raises:
        ConfigError: (``key``) a missing or malformed file, or an unknown split name.
    """
    path = Path(path)
    files = [path]
    test_file = path.with_name("test_videodatainfo.json")
    if path.name == "train_val_videodatainfo.json" and test_file.is_file():
        files.append(test_file)
    splits: dict[str, str] = {}
    captions: dict[str, list[str]] = {}
    for file in files:
        data = _load_json(file, key)
        for video in data["videos"]:
            name = _SPLIT_NAMES.get(str(video.get("split", "")).lower())
            if name is None:
                raise ConfigError(key, f"'{file}': video {video.get('video_id')} has unknown split {video}")
            splits[str(video["video_id"])] = name
        for sentence in data["sentences"]:
            caption = " ".join(str(sentence.get("caption", "")).split())
            captions.setdefault(str(sentence["video_id"]), []).append(caption)
    return splits, captions


def _csv_column(path: Path, column: str, key: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise ConfigError(
            key, f"'{path}' does not exist (the 1k-A split files of the CLIP4Clip / JSFusion release)"
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv_module.DictReader(handle))
    if rows and column not in rows[0]:
        raise ConfigError(key, f"'{path}' has no column '{column}' (found {sorted(rows[0])})")
    return rows


def _resolve(root: Path, value: str | Path) -> Path:
    """``value`` relative to ``root`` unless absolute."""
    path = Path(str(value)).expanduser()
    return path if path.is_absolute() else root / path


def _video_files(root: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """``{stem: path}`` of every video file under ``root`` (sorted walk; the first of a repeated stem wins)."""
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in extensions:
                found.setdefault(path.stem, path)
    return found


class MSRVTTDataset(VideoFolderDataset):
    """Captioned clips of MSR-VTT videos: :class:`~vidgen.data.video_folder.VideoFolderDataset` over
    :class:`MSRVTTEntry` items. Items: ``{"video": (3, F, H, W) float32 in [-1, 1], "caption": str, "index":
    int}``; the caption is drawn from the video's captions per ``(seed, epoch, index)`` when
    ``random_caption``, else the first one.
    """

    def __init__(
        self, entries: Sequence[MSRVTTEntry], root: str | Path, random_caption: bool, **kwargs: Any
    ) -> None:
        if not entries:
            raise ConfigError("data.root", f"no MSR-VTT videos selected under '{root}'")
        super().__init__(root=root, entries=list(entries), class_from_folder=False, **kwargs)
        self.random_caption = bool(random_caption)

    def caption(self, index: int) -> str:
        """The caption item ``index`` carries this epoch (no decoding)."""
        captions = self.entries[int(index)].captions
        if not self.random_caption or len(captions) == 1:
            return captions[0]
        rng = np.random.default_rng([self.seed, self.epoch, int(index), 5])
        return captions[int(rng.integers(len(captions)))]

    def condition_of(self, index: int) -> dict[str, int | str]:
        return {"caption": self.caption(index)}

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = super().__getitem__(index)
        item["caption"] = self.caption(int(item["index"]))
        return item


class MSRVTTDataModule(ClipDataModule):
    """MSR-VTT text-video pairs (see the module docstring for the files, splits and caption protocol).

    Args:
        root: the MSR-VTT folder (annotations and videos, searched recursively for ``<video_id>.mp4``).
        annotations: the JSON (relative to ``root`` or absolute).
        protocol: ``2016`` (train 6,513 / val 497 / test 2,990) or ``1k-A`` (train 9k / test 1k).
        train_csv, test_csv: the 1k-A files (relative to ``root`` or absolute).
        eval_captions: ``first`` (one clip per test video, its first caption) or ``all`` (one per pair).
        num_frames, frame_stride, resolution, channels, hflip, probe, short_videos: clip options (see
            :class:`~vidgen.data.video_folder.VideoFolderDataset`; ``short_videos`` is the training clips',
            validation and evaluation clips are padded).
        batch_size, num_workers, val_batch_size, drop_last, pin_memory, seed, joint_image_frames,
            worker_timeout, worker_start_method: loader options (see
            :class:`~vidgen.data.datamodule.ClipDataModule`, :mod:`vidgen.data.worker_options`).
        extensions: video file extensions.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        annotations: str | Path = "train_val_videodatainfo.json",
        protocol: str = "2016",
        train_csv: str | Path = "MSRVTT_train.9k.csv",
        test_csv: str | Path = "MSRVTT_JSFUSION_test.csv",
        eval_captions: str = "first",
        name: str = "msrvtt",
        num_frames: int = 16,
        frame_stride: int = 4,
        resolution: int | Sequence[int] = 256,
        channels: int = 3,
        batch_size: int = 4,
        num_workers: int = 8,
        hflip: bool = False,
        probe: bool = False,
        short_videos: str = "skip",
        seed: int = 0,
        val_batch_size: int | None = None,
        drop_last: bool = True,
        pin_memory: bool = False,
        joint_image_frames: int = 0,
        cache: str | None = None,
        extensions: Sequence[str] = (".mp4", ".avi", ".webm", ".mkv"),
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
        self._check_rgb_root(channels, root, "MSR-VTT videos", "the MSR-VTT folder (annotations + videos)")
        self.name = name
        self.root = Path(str(root)).expanduser()
        if not self.root.is_dir():
            raise ConfigError("data.root", f"'{self.root}' is not a folder; expected the MSR-VTT folder")
        self.protocol = checked_choice("data.protocol", str(protocol), PROTOCOLS)
        self.eval_captions = checked_choice("data.eval_captions", str(eval_captions), ("first", "all"))
        splits, captions = read_msrvtt_annotations(_resolve(self.root, annotations))
        sides: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        if self.protocol == "2016":
            for video_id, split in splits.items():
                sides[split].append(video_id)
        else:
            sides["train"] = [
                r["video_id"]
                for r in _csv_column(_resolve(self.root, train_csv), "video_id", "data.train_csv")
            ]
            test_rows = _csv_column(_resolve(self.root, test_csv), "video_id", "data.test_csv")
            sides["test"] = [r["video_id"] for r in test_rows]
            sides["val"] = list(sides["test"])
            for row in test_rows:  # 1k-A scores each test video with its one JSFusion sentence
                if row.get("sentence"):
                    captions[row["video_id"]] = [" ".join(row["sentence"].split())]
        files = _video_files(self.root, tuple(e.lower() for e in extensions))
        self.sides: dict[str, list[MSRVTTEntry]] = {}
        for side, ids in sides.items():
            entries = []
            for video_id in ids:
                path = files.get(video_id)
                if path is None:
                    self.missing_videos.append(
                        (str(self.root / f"{video_id}.mp4"), f"{side} video not on disk")
                    )
                    continue
                texts = tuple(captions.get(video_id) or [""])
                entries.append(
                    MSRVTTEntry(
                        path=path, is_frame_folder=False, group=side, video_id=video_id, captions=texts
                    )
                )
            self.sides[side] = entries
        if not self.sides["train"]:
            raise ConfigError(
                "data.root",
                f"none of the {len(sides['train'])} training videos of the annotations is under '{self.root}' "
                "as <video_id>.mp4",
            )
        if self.missing_videos:
            shown = ", ".join(Path(p).name for p, _ in self.missing_videos[:5])
            warnings.warn(
                f"MSR-VTT '{self.root}': {len(self.missing_videos)} annotated videos are not on disk and are left "
                f"out (e.g. {shown})",
                stacklevel=2,
            )
        val = self.sides["val"] or self.sides["test"]
        if not val:
            raise ConfigError(
                "data.root", f"no validation or test video of the annotations is under '{self.root}'"
            )
        self.batch_size = self.fitted_batch_size(len(self.sides["train"]), "MSR-VTT training videos")
        self._common = self._clip_options(
            self.root, num_frames, frame_stride, resolution, probe, short_videos
        )
        self.train_set = MSRVTTDataset(
            self.sides["train"], random_caption=True, hflip=bool(hflip), random_offset=True, **self._common
        )
        self.val_set = MSRVTTDataset(
            val, random_caption=False, hflip=False, random_offset=False, **self._fixed_clip_options()
        )
        self.training_dataset()  # checks joint_image_frames against the training split

    @property
    def has_captions(self) -> bool:
        return True

    def _evaluation_entries(self) -> list[MSRVTTEntry]:
        """The test videos (validation when the test videos are absent); with ``eval_captions=all`` one entry
        per (video, caption), each holding that caption only."""
        videos = self.sides["test"] or self.sides["val"]
        if self.eval_captions == "first":
            return list(videos)
        return [
            MSRVTTEntry(path=e.path, is_frame_folder=False, group=e.group, video_id=e.video_id, captions=(c,))
            for e in videos
            for c in e.captions
        ]

    def _val_caption(self, index: int) -> str:
        return self.val_set.caption(index)

    def sample_captions(self, n: int) -> list[str]:
        """``n`` evaluation captions: the test videos' first captions (or every pair with
        ``eval_captions=all``) in annotation order, repeated as needed."""
        entries = self._evaluation_entries()
        return [entries[i % len(entries)].captions[0] for i in range(checked_int("n", n, minimum=0))]

    def evaluation_dataset(self, num_clips: int) -> MSRVTTDataset:
        """``num_clips`` real clips of the test split in annotation order (repeated as needed), centred start,
        the fixed captions of :meth:`sample_captions`."""
        entries = self._evaluation_entries()
        chosen = [entries[i % len(entries)] for i in range(checked_int("num_clips", num_clips))]
        return MSRVTTDataset(
            chosen, random_caption=False, hflip=False, random_offset=False, **self._fixed_clip_options()
        )
