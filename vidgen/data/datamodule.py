"""Lightning data modules; constructor kwargs are the flat keys of the ``data`` config node.

Both modules validate every value in ``__init__`` (a bad value raises :class:`ConfigError` naming
``data.<key>`` before any training starts), expose ``num_classes`` / ``class_names`` / ``has_captions``, give
a :class:`~vidgen.data.loader.ResumableDataLoader` for training (resumable mid-epoch; use
``Trainer(use_distributed_sampler=False)``) and a fixed, unshuffled validation loader, and draw sampling
conditions deterministically from the validation split (:meth:`sample_labels`, :meth:`sample_captions`).

``joint_image_frames = K > 0`` turns on image-video joint training (:mod:`vidgen.data.joint`): training
batches carry ``K`` single frames of other clips after the clip's ``F`` frames (``video``:
``(B, C, F + K, H, W)``) and ``num_video_frames`` ``(B,)`` = ``F``; validation and evaluation data stay plain
``F``-frame clips.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidgen.config.checks import checked_frame_size, checked_int, checked_square_side
from vidgen.config.errors import ConfigError
from vidgen.data.bad_videos import BadVideoLog
from vidgen.data.class_captions import ClassCaptions, checked_template
from vidgen.data.joint import JointImageFrames
from vidgen.data.loader import ResumableDataLoader
from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.data.ucf101 import (
    CLASS_INDEX,
    checked_split,
    folder_classes,
    missing_from_lists,
    split_by_lists,
)
from vidgen.data.video_folder import (
    VIDEO_EXTENSIONS,
    VideoFolderDataset,
    checked_short_videos,
    list_videos,
)
from vidgen.data.worker_options import (
    WatchedDataLoader,
    checked_start_method,
    checked_worker_timeout,
    worker_loader_kwargs,
)

__all__ = [
    "ClipDataModule",
    "SyntheticDataModule",
    "VideoFolderDataModule",
    "capped_workers",
    "checked_int",
    "usable_cpus",
]


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a container or a SLURM
    allocation can hold fewer than the machine), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def capped_workers(num_workers: int) -> int:
    """``num_workers`` capped at :func:`usable_cpus`, with a warning naming ``data.num_workers`` when capped
    (more decoding processes than cores only adds switching and memory)."""
    cpus = usable_cpus()
    if num_workers <= cpus:
        return num_workers
    message = (
        f"data.num_workers={num_workers} but this process can use {cpus} CPU cores: using {cpus} DataLoader "
        f"workers (set data.num_workers={cpus} or lower to silence this)"
    )
    warnings.warn(message, stacklevel=3)
    print(f"vidgen: warning: {message}")
    return cpus


class ClipDataModule(pl.LightningDataModule):
    """The base of the clip data modules (synthetic, video folder, WebVid): loader options checked, the
    training and validation loaders, condition sampling from the validation split, the train/val split of
    data without a validation set; subclasses set ``train_set`` and ``val_set``."""

    train_set: Dataset
    val_set: Dataset

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        seed: int,
        val_batch_size: int | None,
        drop_last: bool,
        pin_memory: bool,
        joint_image_frames: int = 0,
        cache: str | None = None,
        *,
        worker_timeout: float | None = 600.0,
        worker_start_method: str | None = None,
    ) -> None:
        super().__init__()
        #: ``data.cache``: a precomputed cache to train from; :func:`vidgen.data.cached_datamodule.build_datamodule`
        #: wraps the module in a :class:`~vidgen.data.cached_datamodule.CachedDataModule` when it is set
        self.cache = None if cache in (None, "") else str(cache)
        self.batch_size = checked_int("data.batch_size", batch_size)
        self.joint_image_frames = checked_int("data.joint_image_frames", joint_image_frames, minimum=0)
        self.num_workers = capped_workers(checked_int("data.num_workers", num_workers, minimum=0))
        self.seed = checked_int("data.seed", seed, minimum=0)
        self.val_batch_size = (
            self.batch_size if val_batch_size is None else checked_int("data.val_batch_size", val_batch_size)
        )
        self.drop_last = bool(drop_last)
        self.pin_memory = bool(pin_memory)
        #: ``data.worker_timeout`` / ``data.worker_start_method`` (:mod:`vidgen.data.worker_options`)
        self.worker_timeout = checked_worker_timeout(worker_timeout)
        self.worker_start_method = checked_start_method(worker_start_method)
        #: ``(path, reason)`` of videos the data's index names but the disk lacks (left out at construction)
        self.missing_videos: list[tuple[str, str]] = []

    def fitted_batch_size(self, num_train: int, what: str) -> int:
        """The training batch size for ``num_train`` training videos (``what`` describes them): ``batch_size``,
        or ``num_train`` with a warning naming ``data.batch_size`` when ``drop_last`` would leave no full
        batch (a folder with fewer videos than a batch still trains)."""
        if not self.drop_last or num_train >= self.batch_size:
            return self.batch_size
        message = (
            f"data.batch_size={self.batch_size} but there are only {num_train} {what}: training with batches "
            f"of {num_train} (set data.batch_size={num_train} or lower to silence this)"
        )
        warnings.warn(message, stacklevel=3)
        return num_train

    def attach_bad_video_log(self, log: BadVideoLog) -> None:
        """Record bad videos in ``log`` (see :mod:`vidgen.data.bad_videos`): the missing ones found at
        construction now, the unreadable and too-short ones as the splits meet them (every worker)."""
        for path, reason in self.missing_videos:
            log.record("missing", path, reason)
        for dataset in (getattr(self, "train_set", None), getattr(self, "val_set", None)):
            attach = getattr(dataset, "attach_bad_video_log", None)
            if callable(attach):
                attach(log)

    # ------------------------------------------------------------------------------------ description
    @property
    def num_classes(self) -> int:
        """Number of classes (0 when the data has no labels)."""
        return 0

    @property
    def class_names(self) -> list[str]:
        return []

    @property
    def has_captions(self) -> bool:
        return False

    # ----------------------------------------------------------------------------------------- loaders
    def training_dataset(self) -> Dataset:
        """The dataset the training loader reads: ``train_set``, with ``joint_image_frames`` single frames of
        other clips appended to every clip when that is > 0 (:class:`~vidgen.data.joint.JointImageFrames`)."""
        if self.joint_image_frames == 0:
            return self.train_set
        return JointImageFrames(self.train_set, self.joint_image_frames, seed=self.seed)

    def train_dataloader(self) -> ResumableDataLoader:
        """Shuffled per epoch from ``seed``, sharded over ranks, resumable (see :mod:`vidgen.data.loader`)."""
        return ResumableDataLoader(
            self.training_dataset(),
            batch_size=self.batch_size,
            seed=self.seed,
            shuffle=True,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **self.worker_loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader:
        """The fixed validation clips in order (not sharded: every rank sees all of them)."""
        return WatchedDataLoader(
            self.val_set,
            batch_size=self.val_batch_size,
            shuffle=False,
            drop_last=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **self.worker_loader_kwargs(),
        )

    def worker_loader_kwargs(self) -> dict[str, Any]:
        """``timeout`` and ``multiprocessing_context`` of this module's loaders (none without workers)."""
        return worker_loader_kwargs(self.num_workers, self.worker_timeout, self.worker_start_method)

    # ------------------------------------------------------------------------------------- conditions
    def _val_order(self, n: int) -> list[int]:
        """``n`` validation indices: a permutation seeded by ``seed``, repeated as needed."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        order = np.random.default_rng([self.seed, 7]).permutation(len(self.val_set))  # type: ignore[arg-type]
        return np.resize(order, n).tolist() if n else []

    def _val_label(self, index: int) -> int:
        raise NotImplementedError

    def _val_caption(self, index: int) -> str:
        raise NotImplementedError

    def sample_labels(self, n: int) -> torch.Tensor:
        """``(n,)`` int64 class labels drawn deterministically from the validation split."""
        if self.num_classes == 0:
            raise ValueError(f"{type(self).__name__} has no class labels (num_classes == 0)")
        return torch.tensor([self._val_label(i) for i in self._val_order(n)], dtype=torch.long)

    def sample_captions(self, n: int) -> list[str]:
        """``n`` captions drawn deterministically from the validation split."""
        if not self.has_captions:
            raise ValueError(f"{type(self).__name__} has no captions")
        return [self._val_caption(i) for i in self._val_order(n)]

    def _clip_options(
        self,
        root: Path,
        num_frames: int,
        frame_stride: int,
        resolution: int | Sequence[int],
        probe: bool,
        short_videos: str,
    ) -> dict[str, Any]:
        """The clip options every video dataset of this module shares (checked, naming their keys): ``root``,
        ``num_frames``, ``frame_stride``, ``resolution``, the module's ``seed``, ``probe`` and ``short_videos``
        (``skip`` | ``pad``)."""
        return {
            "root": root,
            "num_frames": checked_int("data.num_frames", num_frames),
            "frame_stride": checked_int("data.frame_stride", frame_stride),
            "resolution": checked_frame_size("data.resolution", resolution),
            "seed": self.seed,
            "probe": bool(probe),
            "short_videos": checked_short_videos(short_videos),
        }

    def _fixed_clip_options(self) -> dict[str, Any]:
        """The clip options (``self._common``) of the fixed clip sets, validation and evaluation: a too-short
        video is padded there (counted all the same), whatever ``data.short_videos`` says for training, so that
        each listed video keeps its own clip instead of the next video's."""
        return {**self._common, "short_videos": "pad"}

    @staticmethod
    def _check_rgb_root(channels: int, root: Any, source: str, expected: str) -> None:
        """Decoded video data is RGB (``data.channels`` must be 3) and needs ``data.root`` set; ``source`` names
        the data in the message, ``expected`` what the root should hold."""
        if channels != 3:
            raise ConfigError("data.channels", f"{source} are decoded as RGB (3 channels), got {channels}")
        if root is None or str(root).strip() == "":
            raise ConfigError("data.root", f"is not set; expected {expected}")

    def _split(self, entries: list[Any], val_fraction: float, unset_key: str) -> tuple[list[Any], list[Any]]:
        """Hold out ``val_fraction`` of ``entries`` (a seeded permutation) as the validation split, for data
        without a validation set of its own (``unset_key`` names the config key that would give one)."""
        fraction = float(val_fraction)
        if not 0.0 < fraction < 1.0:
            raise ConfigError(
                "data.val_fraction", f"must be in (0, 1) when {unset_key} is unset, got {val_fraction}"
            )
        num_val = max(1, round(fraction * len(entries)))
        if num_val >= len(entries):
            raise ConfigError(
                "data.val_fraction",
                f"{len(entries)} videos cannot be split into train and val with val_fraction={val_fraction}",
            )
        order = np.random.default_rng([self.seed, 1]).permutation(len(entries))
        val_ids = set(order[:num_val].tolist())
        train = [e for i, e in enumerate(entries) if i not in val_ids]
        val = [e for i, e in enumerate(entries) if i in val_ids]
        return train, val


class SyntheticDataModule(ClipDataModule):
    """Moving coloured shapes (:class:`~vidgen.data.synthetic.SyntheticVideoDataset`), labels and captions.

    Args:
        num_frames, resolution, channels: clip shape ``(channels, num_frames, resolution, resolution)``.
        batch_size: per-rank training batch size.
        num_workers: DataLoader workers (rendering is cheap; 0 is fine at 32x32).
        train_clips, val_clips: clips in the train / val split (disjoint random streams).
        seed: seeds the clips and the training order.
        max_objects, min_objects: objects per clip.
        shapes, motions, colors: subsets of the vocabularies (define ``class_names``).
        object_size, speed: ``[min, max]`` fractions of the resolution (size; displacement per frame).
        frame_stride: render every ``frame_stride``-th frame of a ``(F - 1) * frame_stride + 1``-frame motion
            (the synthetic counterpart of a real video's sampling interval; 1 = every frame).
        joint_image_frames: ``K`` single frames of other training clips appended to every training clip
            (image-video joint training; 0 = off).
        val_batch_size: default ``batch_size``.
        drop_last: drop the incomplete last training batch.
        pin_memory: DataLoader pin_memory.
        worker_timeout, worker_start_method: seconds a DataLoader worker may take for a batch before the run
            fails naming ``data.worker_timeout`` (``None``: no limit), and how workers start (``None``:
            Python's default; see :mod:`vidgen.data.worker_options`).
    """

    def __init__(
        self,
        name: str = "synthetic",
        num_frames: int = 8,
        resolution: int = 32,
        channels: int = 3,
        batch_size: int = 16,
        num_workers: int = 0,
        train_clips: int = 4096,
        val_clips: int = 64,
        seed: int = 0,
        max_objects: int = 1,
        min_objects: int = 1,
        shapes: Sequence[str] | None = None,
        motions: Sequence[str] | None = None,
        colors: Sequence[str] | None = None,
        object_size: Sequence[float] | float = (0.3, 0.4),
        speed: Sequence[float] | float = (0.03, 0.06),
        frame_stride: int = 1,
        joint_image_frames: int = 0,
        cache: str | None = None,
        val_batch_size: int | None = None,
        drop_last: bool = True,
        pin_memory: bool = False,
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
        common = {
            "num_frames": checked_int("data.num_frames", num_frames),
            "frame_stride": checked_int("data.frame_stride", frame_stride),
            "resolution": checked_square_side(
                "data.resolution", resolution, "the synthetic generator (data=synthetic)"
            ),
            "channels": channels,
            "seed": self.seed,
            "max_objects": checked_int("data.max_objects", max_objects),
            "min_objects": checked_int("data.min_objects", min_objects),
            "shapes": None if shapes is None else list(shapes),
            "motions": None if motions is None else list(motions),
            "colors": None if colors is None else list(colors),
            "object_size": object_size if isinstance(object_size, int | float) else list(object_size),
            "speed": speed if isinstance(speed, int | float) else list(speed),
        }
        train_clips = checked_int("data.train_clips", train_clips)
        if self.drop_last and train_clips < self.batch_size:
            raise ConfigError(
                "data.train_clips", f"{train_clips} clips make no full batch of batch_size={self.batch_size}"
            )
        self._common = common
        self.train_set = SyntheticVideoDataset(num_clips=train_clips, split="train", **common)
        self.val_set = SyntheticVideoDataset(
            num_clips=checked_int("data.val_clips", val_clips), split="val", **common
        )
        self.training_dataset()  # checks joint_image_frames against the training split

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.train_set.class_names

    @property
    def has_captions(self) -> bool:
        return True

    def _val_label(self, index: int) -> int:
        return self.val_set.describe(index).label

    def evaluation_dataset(self, num_clips: int) -> SyntheticVideoDataset:
        """``num_clips`` real clips for evaluation metrics: the ``test`` split, disjoint from train and val."""
        return SyntheticVideoDataset(
            num_clips=checked_int("num_clips", num_clips), split="test", **self._common
        )

    def _val_caption(self, index: int) -> str:
        return self.val_set.describe(index).caption


class VideoFolderDataModule(ClipDataModule):
    """Real videos from a folder tree (:class:`~vidgen.data.video_folder.VideoFolderDataset`).

    The validation split is UCF101's ``testlist0N.txt`` with ``split=N``, else ``val_root`` when given, else a
    seeded ``val_fraction`` of the videos under ``root`` (at least one video; random over files, so clips of
    one source may fall on both sides). With fewer training videos than ``batch_size`` the batch shrinks to
    their number, with a warning naming ``data.batch_size``.
    Validation clips are centred, not flipped, and optionally capped at ``val_max_clips`` (a seeded
    subset).

    Args:
        root: folder of videos / frame folders (searched recursively).
        num_frames, frame_stride, resolution: clip sampling (see the dataset).
        batch_size, num_workers: training loader.
        class_from_folder: labels from the top-level folders under ``root``.
        hflip: random horizontal flips for training.
        val_fraction: share of ``root`` used for validation when there is no ``val_root``; in ``(0, 1)``.
        val_root: separate validation folder (same class folders).
        seed: split, training order and augmentation seed.
        num_classes: ``None`` (default): read from the data (the classes of UCF101's ``classInd.txt`` when the
            split lists are found, else the class folders); a number is checked against the data and a
            mismatch fails naming ``data.num_classes``.
        split: ``all`` (every video under ``root``; validation is ``val_root`` or a ``val_fraction``
            hold-out) or UCF101's official split ``1`` / ``2`` / ``3`` (``trainlist0N.txt`` trains,
            ``testlist0N.txt`` validates and gives the evaluation clips; :mod:`vidgen.data.ucf101`).
        split_dir: UCF101's ``ucfTrainTestlist`` folder (relative to ``root`` or absolute); ``None``: looked
            for in ``root`` and next to it.
        extensions: video file extensions.
        val_max_clips: cap on validation videos.
        val_batch_size, drop_last, pin_memory: loader options.
        worker_timeout, worker_start_method: seconds a DataLoader worker may take for a batch before the run
            fails naming ``data.worker_timeout`` (``None``: no limit), and how workers start (``None``:
            Python's default; see :mod:`vidgen.data.worker_options`).
        probe: open every video at construction to exclude unreadable ones early (slow on big sets).
        short_videos: ``skip`` (default) a training video with fewer frames than a clip spans, like an
            unreadable one (counted, named in ``bad_videos.txt``), or ``pad`` its clip by repeating its last
            frame; validation and evaluation clips are always padded (:meth:`_fixed_clip_options`).
        joint_image_frames: ``K`` single frames of other training videos (uniform over their frames, resized,
            cropped and flipped like clips) appended to every training clip (image-video joint training;
            0 = off).
        class_captions: ``None`` or a prompt holding ``{name}`` (e.g. ``"{name}"``): every clip also gets the
            caption of its class (:mod:`vidgen.data.class_captions`, ``ApplyEyeMakeup`` -> ``apply eye
            makeup``), for text models on a class-labelled dataset; needs ``class_from_folder``.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        name: str = "videos",
        num_frames: int = 16,
        frame_stride: int = 1,
        resolution: int | Sequence[int] = 64,
        channels: int = 3,
        batch_size: int = 8,
        num_workers: int = 4,
        class_from_folder: bool = False,
        hflip: bool = True,
        val_fraction: float = 0.05,
        val_root: str | Path | None = None,
        seed: int = 0,
        num_classes: int | None = None,
        split: str | int = "all",
        split_dir: str | Path | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        val_max_clips: int | None = None,
        val_batch_size: int | None = None,
        drop_last: bool = True,
        pin_memory: bool = False,
        probe: bool = False,
        short_videos: str = "skip",
        joint_image_frames: int = 0,
        cache: str | None = None,
        class_captions: str | None = None,
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
        if class_captions is not None:
            checked_template(class_captions)
            if not class_from_folder:
                raise ConfigError(
                    "data.class_captions", "needs class labels: set data.class_from_folder=true"
                )
        self.class_captions = class_captions
        self._check_rgb_root(channels, root, "video folders", "a folder of videos or frame folders")
        self.name = name
        extensions = tuple(str(e) for e in extensions)
        split = checked_split(split)
        entries = list_videos(root, extensions, key="data.root")
        classes, lists = folder_classes(root, entries, bool(class_from_folder), split, split_dir)
        eval_entries = entries
        if lists is not None and split != "all":
            if val_root is not None:
                raise ConfigError("data.val_root", f"must be null with data.split={split} (testlist0{split})")
            train_entries, val_entries, missing = split_by_lists(root, entries, lists)
            eval_entries = val_entries
        else:
            missing = missing_from_lists(root, entries, lists) if lists is not None else []
            if val_root is not None:
                val_entries = list_videos(val_root, extensions, key="data.val_root")
                train_entries = entries
            else:
                train_entries, val_entries = self._split(entries, val_fraction, "data.val_root")
        if lists is not None:
            self.missing_videos = [(path, f"listed in {lists.split_dir}, not on disk") for path in missing]
        if val_max_clips is not None and checked_int("data.val_max_clips", val_max_clips) < len(val_entries):
            keep = np.random.default_rng([self.seed, 3]).permutation(len(val_entries))[:val_max_clips]
            val_entries = [val_entries[i] for i in sorted(keep.tolist())]

        if classes is not None:
            stray = [e for e in val_entries if e.group not in classes]
            if stray:
                key = "data.val_root" if val_root is not None else "data.root"
                raise ConfigError(key, f"'{stray[0].path}' is not in a known class folder {classes}")
        found = len(classes) if classes is not None else 0
        if num_classes is not None and int(num_classes) != found:
            source = (
                f"'{lists.split_dir / CLASS_INDEX}' lists {found} classes"
                if lists is not None
                else f"{found} class folders were found under '{root}'"
                + ("" if class_from_folder else " (data.class_from_folder is false)")
            )
            raise ConfigError(
                "data.num_classes",
                f"is {num_classes} but {source}; set data.num_classes=null to read it from the data "
                f"(or data.num_classes={found})",
            )
        self.split, self.split_lists = split, lists
        self.batch_size = self.fitted_batch_size(len(train_entries), f"training videos under '{root}'")
        common = {
            **self._clip_options(root, num_frames, frame_stride, resolution, probe, short_videos),
            "class_from_folder": bool(class_from_folder),
            "extensions": extensions,
            "classes": classes,
        }
        self._common, self._all_entries = common, eval_entries
        self.train_set = VideoFolderDataset(
            entries=train_entries, hflip=bool(hflip), random_offset=True, **common
        )
        self.val_set = VideoFolderDataset(
            entries=val_entries, hflip=False, random_offset=False, **self._fixed_clip_options()
        )
        if class_captions is not None:
            self.train_set = ClassCaptions(self.train_set, class_captions)
            self.val_set = ClassCaptions(self.val_set, class_captions)
        self.training_dataset()  # checks joint_image_frames against the training split

    @staticmethod
    def count_classes(
        root: str | Path | None = None,
        class_from_folder: bool = False,
        split: str | int = "all",
        split_dir: str | Path | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
    ) -> int:
        """The number of classes a module built with these keys has (``data.num_classes: null``): the
        classes of UCF101's ``classInd.txt`` when found, else the class folders under ``root``; 0 without
        ``class_from_folder``. Lists the files, decodes nothing."""
        if not class_from_folder:
            checked_split(split)
            return 0
        if root is None or str(root).strip() == "":
            raise ConfigError("data.root", "is not set; expected a folder of class folders of videos")
        entries = list_videos(root, tuple(str(e) for e in extensions), key="data.root")
        classes, _ = folder_classes(root, entries, True, checked_split(split), split_dir)
        return len(classes or [])

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.train_set.class_names)

    @property
    def has_captions(self) -> bool:
        return self.class_captions is not None

    def _val_label(self, index: int) -> int:
        return self.val_set.labels[index]

    def _val_caption(self, index: int) -> str:
        return self.val_set.caption_of(index)

    def evaluation_dataset(self, num_clips: int) -> VideoFolderDataset:
        """``num_clips`` real clips for evaluation metrics, from every video under ``root`` (Latte uses UCF101's
        train and test videos) or, with ``split=N``, from ``testlist0N.txt``'s: a seeded permutation of the videos, repeated if more clips than videos are
        asked for (repeats get other seeded offsets); no flips."""
        order = np.random.default_rng([self.seed, 11]).permutation(len(self._all_entries))
        entries = [self._all_entries[i] for i in np.resize(order, checked_int("num_clips", num_clips))]
        return VideoFolderDataset(
            entries=entries, hflip=False, random_offset=True, **self._fixed_clip_options()
        )
