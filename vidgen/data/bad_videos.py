"""Unreadable, too-short and missing videos, counted across every process and reported once.

DataLoader workers are separate processes, so a count kept in a dataset object stays in the worker that
read the file. :class:`BadVideoLog` is a folder that every process (main, workers, ranks) appends to: one
file per process id, one tab-separated line ``kind, path, reason`` per bad video (a process writes a
``(kind, path)`` once). Reading merges the files, so each video counts once however many workers, epochs
or ranks met it.

:class:`BadVideoReport` (a Lightning callback, ``callbacks.bad_videos``) gives the log to the data module
before the loaders start, and on rank 0 prints one line at the end of each training epoch when something
new turned up and a summary at the end of the run; both rewrite ``<run dir>/bad_videos.txt`` with every
name. Kinds:

* ``unreadable``: the file could not be decoded (or has no frame); the next video is read instead.
* ``too_short``: fewer frames than a clip spans (``(num_frames - 1) * frame_stride + 1``): a training video
  is skipped like an unreadable one (``data.short_videos=skip``, the default) or its clip padded by repeating
  the last frame (``pad``, and always for validation and evaluation clips); the reason says which.
* ``missing``: listed by the dataset's index (a CSV, JSON or split list) but not on disk; left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

__all__ = ["BAD_VIDEO_KINDS", "BadVideoLog", "BadVideoReport", "format_bad_videos"]

#: the kinds of bad video, in report order
BAD_VIDEO_KINDS: tuple[str, ...] = ("unreadable", "too_short", "missing")
#: names shown per kind in a printed line (all of them go to bad_videos.txt)
_SHOWN = 3


class BadVideoLog:
    """A folder of per-process append-only files recording bad videos (see the module docstring).

    Picklable (a path and a set), so it travels into DataLoader workers with the dataset.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._written: set[tuple[str, str]] = set()

    def record(self, kind: str, path: str | Path, reason: str) -> None:
        """Append ``kind, path, reason`` unless this process already recorded ``(kind, path)``."""
        if kind not in BAD_VIDEO_KINDS:
            raise ValueError(f"kind must be one of {BAD_VIDEO_KINDS}, got {kind!r}")
        key = (kind, str(path))
        if key in self._written:
            return
        self._written.add(key)
        self.directory.mkdir(parents=True, exist_ok=True)
        line = "\t".join((kind, str(path), " ".join(str(reason).split()))) + "\n"
        with (self.directory / f"{os.getpid()}.tsv").open("a", encoding="utf-8") as handle:
            handle.write(line)

    def read(self) -> dict[str, dict[str, str]]:
        """``{kind: {path: reason}}`` over every process's file, each path once per kind."""
        found: dict[str, dict[str, str]] = {kind: {} for kind in BAD_VIDEO_KINDS}
        if not self.directory.is_dir():
            return found
        for part in sorted(self.directory.glob("*.tsv")):
            for line in part.read_text(encoding="utf-8").splitlines():
                fields = line.split("\t")
                if len(fields) == 3 and fields[0] in found:
                    found[fields[0]].setdefault(fields[1], fields[2])
        return found

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory, "_written": set()}  # a new process writes its own lines


def format_bad_videos(found: dict[str, dict[str, str]]) -> str:
    """One line: ``2 unreadable (a.mp4, b.avi), 1 too_short (c.mp4)``; empty when nothing is bad."""
    parts = []
    for kind in BAD_VIDEO_KINDS:
        paths = sorted(found.get(kind, {}))
        if paths:
            shown = ", ".join(Path(p).name for p in paths[:_SHOWN]) + (" ..." if len(paths) > _SHOWN else "")
            parts.append(f"{len(paths)} {kind} ({shown})")
    return ", ".join(parts)


def write_bad_videos(found: dict[str, dict[str, str]], path: Path) -> None:
    """``path``: a header, then ``kind<TAB>path<TAB>reason`` per bad video, sorted by kind and path."""
    lines = ["# kind\tpath\treason (vidgen/data/bad_videos.py)"]
    for kind in BAD_VIDEO_KINDS:
        lines += [f"{kind}\t{p}\t{reason}" for p, reason in sorted(found.get(kind, {}).items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class BadVideoReport(pl.Callback):
    """Collect the bad videos of all processes in ``<run_dir>/.bad_videos/`` and report them once.

    At ``setup`` the data module's ``attach_bad_video_log`` (when it has one) receives the log; at the end
    of each training epoch rank 0 prints ``vidgen: epoch N: ...`` when the set of bad videos grew, and at
    the end of fit a summary; both rewrite ``<run_dir>/bad_videos.txt`` (nothing is written for clean data).

    Args:
        run_dir: the run directory.
    """

    def __init__(self, run_dir: str | Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.bad_video_log = BadVideoLog(self.run_dir / ".bad_videos")
        self._reported = 0

    @property
    def file(self) -> Path:
        """``<run_dir>/bad_videos.txt``."""
        return self.run_dir / "bad_videos.txt"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        attach = getattr(datamodule, "attach_bad_video_log", None)
        if callable(attach):
            attach(self.bad_video_log)

    def _report(self, trainer: pl.Trainer, when: str, always: bool) -> None:
        if not trainer.is_global_zero:
            return
        found = self.bad_video_log.read()
        total = sum(len(paths) for paths in found.values())
        if total == 0 or (total == self._reported and not always):
            return
        self._reported = total
        write_bad_videos(found, self.file)
        print(f"vidgen: {when}: bad videos so far: {format_bad_videos(found)}; all names in {self.file}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, f"epoch {trainer.current_epoch}", always=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, "end of training", always=True)
