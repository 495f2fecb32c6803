"""UCF101's official split lists (Soomro et al. 2012, ``UCF101TrainTestSplits-RecognitionTask.zip``).

The zip unpacks to a folder ``ucfTrainTestlist`` holding::

    classInd.txt      "1 ApplyEyeMakeup" ... "101 YoYo"         (1-based index, class folder name)
    trainlist01.txt   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"   (path under UCF-101/, 1-based label)
    testlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"     (no label)
    trainlist02.txt, testlist02.txt, trainlist03.txt, testlist03.txt

``data.split`` picks what vidgen trains on:

* ``all`` (default): every video under ``data.root``, train and test lists together -- Latte's protocol for
  FVD (seed 002: "for UCF101 we use both the training and test sets"), also VDM's (all 13,320 videos) and
  Latent-Shift's ("we train on all the samples from both train and test splits").
* ``1``, ``2``, ``3``: ``trainlist0N`` for training, ``testlist0N`` for validation and evaluation (the action
  recognition protocol).

Labels are 0-based: ``label = classInd index - 1``. When ``classInd.txt`` is found the class order is its
order (the official one); otherwise the sorted class folder names, which for UCF101 give the same order.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vidgen.config.errors import ConfigError
from vidgen.data.video_folder import VideoEntry

__all__ = [
    "CLASS_INDEX",
    "SPLIT_DIR_NAME",
    "UCF101_SPLITS",
    "UCF101SplitLists",
    "checked_split",
    "find_split_dir",
    "folder_classes",
    "missing_from_lists",
    "read_class_index",
    "read_split_lists",
    "split_by_lists",
]

#: values of ``data.split``
UCF101_SPLITS: tuple[str, ...] = ("all", "1", "2", "3")
#: the folder name of the official split lists
SPLIT_DIR_NAME = "ucfTrainTestlist"
#: the class index file inside it
CLASS_INDEX = "classInd.txt"


@dataclass
class UCF101SplitLists:
    """One official split: class names in classInd order and the relative video paths of each side.

    Attributes:
        split_dir: the folder the lists were read from.
        classes: class names; position ``i`` is label ``i`` (classInd index ``i + 1``).
        train: ``(relative path, label)`` of ``trainlist0N.txt`` (empty for split ``all``).
        test: ``(relative path, label)`` of ``testlist0N.txt`` (labels from the class folder).
        listed: for split ``all``, every video of split 1's two lists (when present): all of UCF101.
    """

    split_dir: Path
    classes: list[str]
    train: list[tuple[str, int]] = field(default_factory=list)
    test: list[tuple[str, int]] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)


def checked_split(value: object) -> str:
    """``data.split`` as one of ``all``, ``1``, ``2``, ``3`` (ints accepted); otherwise a :class:`ConfigError`."""
    text = str(value).strip().lower()
    if text not in UCF101_SPLITS:
        raise ConfigError("data.split", f"unknown value {value!r}; choose one of {', '.join(UCF101_SPLITS)}")
    return text


def find_split_dir(root: str | Path, split_dir: str | Path | None) -> tuple[Path | None, list[Path]]:
    """The folder of the split lists: ``split_dir`` when set (relative to ``root`` or absolute), else the first
    of ``<root>/ucfTrainTestlist`` and ``<root>/../ucfTrainTestlist`` (where the two official downloads
    unpack side by side) that holds ``classInd.txt``. Returns ``(found or None, places searched)``."""
    root = Path(root).expanduser()
    if split_dir is not None and str(split_dir).strip():
        given = Path(str(split_dir)).expanduser()
        candidates = [given if given.is_absolute() else root / given]
    else:
        candidates = [root / SPLIT_DIR_NAME, root.parent / SPLIT_DIR_NAME]
    for candidate in candidates:
        if (candidate / CLASS_INDEX).is_file():
            return candidate, candidates
    return None, candidates


def _lines(path: Path, key: str) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-empty lines of ``path``; a missing file names ``key``."""
    if not path.is_file():
        raise ConfigError(key, f"'{path}' does not exist (expected the official UCF101 split lists)")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | Path, key: str = "data.split_dir") -> list[str]:
    """Class names of a ``classInd.txt`` (``"<1-based index> <name>"`` per line) in index order.

    Raises:
        ConfigError: (``key``) a malformed line, or indices that are not exactly 1..N.
    """
    path = Path(path)
    found: dict[int, str] = {}
    for number, line in _lines(path, key):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ConfigError(key, f"{path}:{number}: expected '<index> <ClassName>', got {line!r}")
        index = int(parts[0])
        if index in found:
            raise ConfigError(key, f"{path}:{number}: class index {index} appears twice")
        found[index] = parts[1]
    if sorted(found) != list(range(1, len(found) + 1)):
        raise ConfigError(key, f"{path}: class indices must be 1..{len(found)}, got {sorted(found)[:5]} ...")
    names = [found[i] for i in range(1, len(found) + 1)]
    if len(set(names)) != len(names):
        raise ConfigError(key, f"{path}: a class name appears twice")
    return names


def _folder_label(path: Path, number: int, relative: str, lookup: dict[str, int], key: str) -> int:
    """The label of ``relative``'s class folder (its first component) in ``lookup``."""
    folder = relative.split("/", 1)[0]
    if "/" not in relative or folder not in lookup:
        raise ConfigError(
            key, f"{path}:{number}: '{relative}' is not '<ClassName>/<video>' with a class of classInd.txt"
        )
    return lookup[folder]


def _read_list(path: Path, lookup: dict[str, int], labelled: bool, key: str) -> list[tuple[str, int]]:
    """``(relative path, 0-based label)`` per line of a train list (``path label``) or test list (``path``)."""
    items: list[tuple[str, int]] = []
    for number, line in _lines(path, key):
        parts = line.replace("\\", "/").split()
        allowed = (2,) if labelled else (1, 2)  # a test list with labels (some re-packs) reads too
        if len(parts) not in allowed:
            form = "'<Class>/<video>.avi <label>'" if labelled else "'<Class>/<video>.avi'"
            raise ConfigError(key, f"{path}:{number}: expected {form}, got {line!r}")
        relative = parts[0]
        label = _folder_label(path, number, relative, lookup, key)
        if labelled and (not parts[1].isdigit() or int(parts[1]) - 1 != label):
            raise ConfigError(
                key,
                f"{path}:{number}: label {parts[1]} disagrees with classInd.txt, which gives "
                f"'{relative.split('/', 1)[0]}' the index {label + 1}",
            )
        items.append((relative, label))
    return items


def read_split_lists(split_dir: str | Path, split: str, key: str = "data.split_dir") -> UCF101SplitLists:
    """Read ``classInd.txt`` and, for split ``1``-``3``, ``trainlist0N.txt`` / ``testlist0N.txt`` of ``split_dir``.

    Raises:
        ConfigError: (``key``) a missing file, a malformed line (file and line number in the message), a
            video outside the classes of classInd.txt, or a train label that disagrees with classInd.txt.
    """
    split_dir = Path(split_dir)
    split = checked_split(split)
    classes = read_class_index(split_dir / CLASS_INDEX, key)
    lists = UCF101SplitLists(split_dir=split_dir, classes=classes)
    lookup = {name: i for i, name in enumerate(classes)}
    if split == "all":  # split 1's two lists name every video: what a complete UCF-101 folder holds
        if all((split_dir / f"{kind}list01.txt").is_file() for kind in ("train", "test")):
            listed = _read_list(split_dir / "trainlist01.txt", lookup, True, key)
            listed += _read_list(split_dir / "testlist01.txt", lookup, False, key)
            lists.listed = [path for path, _ in listed]
        return lists
    lists.train = _read_list(split_dir / f"trainlist0{split}.txt", lookup, True, key)
    lists.test = _read_list(split_dir / f"testlist0{split}.txt", lookup, False, key)
    return lists


def folder_classes(
    root: str | Path,
    entries: Sequence[VideoEntry],
    class_from_folder: bool,
    split: str,
    split_dir: str | Path | None,
) -> tuple[list[str] | None, UCF101SplitLists | None]:
    """The class names of a folder dataset and the split lists they came from.

    Without ``class_from_folder``: ``(None, None)`` (no labels; ``split`` must be ``all``). With it: the
    names of ``classInd.txt`` when the split lists are found (:func:`find_split_dir`), else the sorted
    top-level folders of ``entries``; the lists are required for split ``1``-``3``.

    Raises:
        ConfigError: ``data.split`` 1-3 without ``class_from_folder``, or ``data.split_dir`` when the lists are
            needed (or named) and not found (the message lists the places searched).
    """
    split = checked_split(split)
    if not class_from_folder:
        if split != "all":
            raise ConfigError(
                "data.split",
                f"{split} reads UCF101's class split lists: it needs data.class_from_folder=true",
            )
        return None, None
    found, searched = find_split_dir(root, split_dir)
    named = split_dir is not None and str(split_dir).strip() != ""
    if found is None and (split != "all" or named):
        places = ", ".join(f"'{p / CLASS_INDEX}'" for p in searched)
        raise ConfigError(
            "data.split_dir",
            f"data.split={split} needs UCF101's official split lists, but none of {places} exists; unzip "
            f"UCF101TrainTestSplits-RecognitionTask.zip next to the UCF-101 folder or set data.split_dir "
            "to its ucfTrainTestlist folder (data.split=all needs no lists)",
        )
    if found is None:
        return sorted({e.group for e in entries if e.group}), None
    lists = read_split_lists(found, split)
    return list(lists.classes), lists


def split_by_lists(
    root: str | Path, entries: Sequence[VideoEntry], lists: UCF101SplitLists
) -> tuple[list[VideoEntry], list[VideoEntry], list[str]]:
    """The ``(train, test, missing)`` videos of ``entries`` named by ``lists`` (paths relative to ``root``), in
    list order; ``missing`` are the paths of listed videos that are not on disk, left out with one warning
    giving their count and first names.

    Raises:
        ConfigError: (``data.root``) no video of a side is on disk.
    """
    root = Path(root).expanduser()
    by_path = {e.path.relative_to(root).as_posix(): e for e in entries}
    sides: list[list[VideoEntry]] = []
    absent: list[str] = []
    for name, items in (("trainlist", lists.train), ("testlist", lists.test)):
        found = [by_path[p] for p, _ in items if p in by_path]
        missing = [p for p, _ in items if p not in by_path]
        if not found:
            raise ConfigError(
                "data.root",
                f"none of the {len(items)} videos of {name} in '{lists.split_dir}' is under '{root}' (e.g. "
                f"'{root / items[0][0]}'); data.root must be the UCF-101 folder the lists refer to"
                if items
                else f"the {name} of '{lists.split_dir}' is empty",
            )
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            warnings.warn(
                f"UCF101 {name} ({lists.split_dir}): {len(missing)} of {len(items)} listed videos are not under "
                f"'{root}' and are left out: {shown}",
                stacklevel=3,
            )
        sides.append(found)
        absent += [str(root / p) for p in missing]
    return sides[0], sides[1], absent


def missing_from_lists(root: str | Path, entries: Sequence[VideoEntry], lists: UCF101SplitLists) -> list[str]:
    """Split ``all``: the paths of the videos the lists name (``lists.listed``) that are not among ``entries``
    (an incomplete UCF-101 folder), with one warning giving their count and the first."""
    root = Path(root).expanduser()
    on_disk = {e.path.relative_to(root).as_posix() for e in entries}
    absent = [str(root / p) for p in lists.listed if p not in on_disk]
    if absent:
        warnings.warn(
            f"UCF101 '{root}': {len(absent)} of the {len(lists.listed)} videos of the split lists in "
            f"'{lists.split_dir}' are not on disk (e.g. {absent[0]})",
            stacklevel=3,
        )
    return absent
