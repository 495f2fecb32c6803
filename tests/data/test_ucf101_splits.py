"""UCF101's official split lists (vidgen/data/ucf101.py) and data.split / data.num_classes of the folder module.

The videos here are empty files: listing and splitting decode nothing, so these tests take milliseconds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vidgen.config.errors import ConfigError
from vidgen.data.datamodule import VideoFolderDataModule
from vidgen.data.num_classes import fill_num_classes
from vidgen.data.ucf101 import find_split_dir, read_class_index, read_split_lists

CLASSES = ["ApplyEyeMakeup", "Basketball", "YoYo"]
#: groups of each class on disk: g01 is in testlist01, g08 in testlist02, g15 in testlist03, g22 trains always
GROUPS = (1, 8, 15, 22)


def _test_groups(split: int) -> range:
    return {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}[split]


def _name(cls: str, group: int) -> str:
    return f"{cls}/v_{cls}_g{group:02d}_c01.avi"


def write_lists(folder: Path, classes: list[str] = CLASSES, groups: tuple[int, ...] = GROUPS) -> Path:
    """``classInd.txt`` and ``trainlist0N.txt`` / ``testlist0N.txt`` in the official formats (CRLF, as shipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(classes, 1)))
    for split in (1, 2, 3):
        train, test = [], []
        for label, cls in enumerate(classes, 1):
            for group in groups:
                if group in _test_groups(split):
                    test.append(f"{_name(cls, group)}\r\n")
                else:
                    train.append(f"{_name(cls, group)} {label}\r\n")
        (folder / f"trainlist0{split}.txt").write_text("".join(train))
        (folder / f"testlist0{split}.txt").write_text("".join(test))
    return folder


@pytest.fixture
def ucf(tmp_path: Path) -> Path:
    """``UCF-101/<class>/<4 empty .avi>`` and ``ucfTrainTestlist/`` side by side, as the downloads unpack."""
    root = tmp_path / "UCF-101"
    for cls in CLASSES:
        for group in GROUPS:
            path = root / _name(cls, group)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    write_lists(tmp_path / "ucfTrainTestlist")
    return root


def _module(root: Path, **kwargs) -> VideoFolderDataModule:
    settings = {"root": root, "class_from_folder": True, "batch_size": 2, "num_workers": 0, **kwargs}
    return VideoFolderDataModule(**settings)


def test_class_index_and_lists_parse_the_official_formats(ucf: Path) -> None:
    lists_dir = ucf.parent / "ucfTrainTestlist"
    assert read_class_index(lists_dir / "classInd.txt") == CLASSES
    lists = read_split_lists(lists_dir, "2")
    assert lists.classes == CLASSES
    assert ("YoYo/v_YoYo_g08_c01.avi", 2) in lists.test and len(lists.test) == 3
    assert ("Basketball/v_Basketball_g01_c01.avi", 1) in lists.train and len(lists.train) == 9
    assert read_split_lists(lists_dir, "all").train == []
    assert find_split_dir(ucf, None)[0] == lists_dir  # next to UCF-101/


@pytest.mark.parametrize("split", [1, 2, 3])
def test_split_n_trains_on_the_trainlist_and_validates_on_the_testlist(ucf: Path, split: int) -> None:
    dm = _module(ucf, split=split)
    test_groups = _test_groups(split)
    val_names = {e.path.name for e in dm.val_set.entries}
    train_names = {e.path.name for e in dm.train_set.entries}
    assert val_names == {Path(_name(c, g)).name for c in CLASSES for g in GROUPS if g in test_groups}
    assert train_names == {Path(_name(c, g)).name for c in CLASSES for g in GROUPS if g not in test_groups}
    assert {e.path for e in dm.evaluation_dataset(3).entries} <= {e.path for e in dm.val_set.entries}
    assert dm.num_classes == 3 and dm.class_names == CLASSES
    assert [dm.val_set.labels[i] for i in range(3)] == [0, 1, 2]  # classInd order, 0-based


def test_split_all_is_the_default_and_uses_every_video(ucf: Path) -> None:
    dm = _module(ucf, val_fraction=0.1)
    assert len(dm.train_set) + len(dm.val_set) == 12 and len(dm.evaluation_dataset(12).entries) == 12


def test_num_classes_is_read_from_class_index_or_folders_and_a_wrong_one_names_the_fix(ucf: Path) -> None:
    classind = ucf.parent / "ucfTrainTestlist" / "classInd.txt"
    classind.write_text(classind.read_text() + "4 Zumba\r\n")  # classInd names a class with no folder here
    assert _module(ucf, val_fraction=0.1).num_classes == 4
    with pytest.raises(ConfigError) as info:
        _module(ucf, num_classes=101, val_fraction=0.1)
    assert info.value.key == "data.num_classes"
    assert "classInd.txt' lists 4 classes" in str(info.value) and "data.num_classes=null" in str(info.value)
    classind.unlink()  # no lists: the class folders
    with pytest.raises(ConfigError, match="3 class folders were found") as info:
        _module(ucf, num_classes=101, val_fraction=0.1)
    assert "data.num_classes=3" in str(info.value)


def test_fill_num_classes_sets_the_config_before_the_model_reads_it(ucf: Path) -> None:
    cfg = OmegaConf.create(
        {
            "data": {
                "_target_": "vidgen.data.datamodule.VideoFolderDataModule",
                "root": str(ucf),
                "class_from_folder": True,
                "num_classes": None,
                "split": "all",
                "batch_size": 4,
            },
            "conditioner": {"num_classes": "${data.num_classes}"},
        }
    )
    assert fill_num_classes(cfg) == 3 and cfg.conditioner.num_classes == 3
    assert fill_num_classes(cfg) is None  # a number is kept


def test_missing_videos_of_a_list_are_counted_and_left_out(ucf: Path) -> None:
    (ucf / _name("YoYo", 22)).unlink()
    with pytest.warns(UserWarning, match=r"1 of 9 listed videos are not under"):
        dm = _module(ucf, split=1)
    assert len(dm.train_set) == 8 and [Path(p).name for p, _ in dm.missing_videos] == ["v_YoYo_g22_c01.avi"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("Basketball/v_Basketball_g22_c01.avi 3", "label 3 disagrees with classInd.txt"),
        ("Unknown/v_Unknown_g22_c01.avi 1", "not '<ClassName>/<video>' with a class of classInd.txt"),
        ("Basketball/v_Basketball_g22_c01.avi", "expected '<Class>/<video>.avi <label>'"),
    ],
)
def test_a_bad_list_line_names_the_file_and_line(ucf: Path, line: str, message: str) -> None:
    trainlist = ucf.parent / "ucfTrainTestlist" / "trainlist01.txt"
    trainlist.write_text(trainlist.read_text() + line + "\n")
    with pytest.raises(ConfigError, match=message) as info:
        _module(ucf, split=1)
    assert info.value.key == "data.split_dir" and "trainlist01.txt:10:" in str(info.value)


def test_split_without_lists_or_bad_values_name_the_key(ucf: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _module(ucf, split=1, split_dir=tmp_path / "nowhere")
    assert info.value.key == "data.split_dir" and "nowhere/classInd.txt" in str(info.value)
    (ucf.parent / "ucfTrainTestlist" / "classInd.txt").unlink()
    with pytest.raises(ConfigError) as info:
        _module(ucf, split=2)
    assert info.value.key == "data.split_dir" and "UCF-101/ucfTrainTestlist/classInd.txt" in str(info.value)
    for kwargs, key in (
        ({"split": 4}, "data.split"),
        ({"split": 1, "class_from_folder": False}, "data.split"),
    ):
        with pytest.raises(ConfigError) as info, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _module(ucf, **kwargs)
        assert info.value.key == key
