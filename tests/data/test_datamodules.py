"""SyntheticDataModule and VideoFolderDataModule: validation in __init__, loaders, condition sampling."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vidgen.config.checks import checked_int
from vidgen.config.errors import ConfigError
from vidgen.data.datamodule import ClipDataModule, SyntheticDataModule, VideoFolderDataModule
from vidgen.data.loader import ResumableDataLoader
from vidgen.data.webvid import WebVidDataModule


def test_synthetic_module_loaders_and_description() -> None:
    dm = SyntheticDataModule(num_frames=4, resolution=16, batch_size=5, train_clips=20, val_clips=7)
    assert dm.num_classes == 21 and len(dm.class_names) == 21 and dm.has_captions
    train = dm.train_dataloader()
    assert isinstance(train, ResumableDataLoader) and len(train) == 4
    batch = next(iter(train))
    assert batch["video"].shape == (5, 3, 4, 16, 16) and batch["video"].dtype == torch.float32
    assert batch["label"].shape == (5,) and batch["label"].dtype == torch.int64
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 5
    assert all(isinstance(c, str) for c in batch["caption"])
    val_a = [b["index"].tolist() for b in dm.val_dataloader()]
    val_b = [b["index"].tolist() for b in dm.val_dataloader()]
    assert val_a == val_b == [[0, 1, 2, 3, 4], [5, 6]]
    assert torch.equal(next(iter(dm.val_dataloader()))["video"], next(iter(dm.val_dataloader()))["video"])


def test_sampled_conditions_come_from_the_val_split_deterministically() -> None:
    dm = SyntheticDataModule(train_clips=32, val_clips=6, seed=2)
    labels = dm.sample_labels(10)
    assert labels.shape == (10,) and labels.dtype == torch.int64
    assert torch.equal(labels, SyntheticDataModule(train_clips=32, val_clips=6, seed=2).sample_labels(10))
    val_labels = [dm.val_set.describe(i).label for i in range(6)]
    val_captions = [dm.val_set.describe(i).caption for i in range(6)]
    assert set(labels.tolist()) <= set(val_labels)
    captions = dm.sample_captions(10)
    assert len(captions) == 10 and set(captions) <= set(val_captions)
    assert sorted(captions[:6]) == sorted(val_captions)  # a permutation of the val split, then repeats
    assert dm.sample_captions(0) == []


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_frames": 0}, "data.num_frames"),
        ({"resolution": 0}, "data.resolution"),
        ({"channels": 4}, "data.channels"),
        ({"batch_size": 0}, "data.batch_size"),
        ({"num_workers": -1}, "data.num_workers"),
        ({"train_clips": 3, "batch_size": 4}, "data.train_clips"),
        ({"val_clips": 0}, "data.val_clips"),
        ({"seed": -1}, "data.seed"),
        ({"motions": ["sideways"]}, "data.motions"),
        ({"speed": [0.1, 0.01]}, "data.speed"),
    ],
)
def test_synthetic_module_rejects_bad_values(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        SyntheticDataModule(**kwargs)
    assert info.value.key == key and str(info.value).startswith(key)


def test_checked_int_accepts_integers_at_least_the_minimum_and_names_the_key() -> None:
    assert checked_int("data.batch_size", 4) == 4
    value = checked_int("data.seed", np.int64(0), minimum=0)
    assert value == 0 and type(value) is int
    for bad in (0, -1, True, 2.0, "3"):
        with pytest.raises(ConfigError, match=r"data\.batch_size: must be an integer >= 1"):
            checked_int("data.batch_size", bad)


def test_the_clip_data_modules_share_one_base() -> None:
    for module in (SyntheticDataModule, VideoFolderDataModule, WebVidDataModule):
        assert issubclass(module, ClipDataModule)


def test_hydra_instantiates_the_data_node() -> None:
    cfg = OmegaConf.create(
        {
            "data": {
                "_target_": "vidgen.data.datamodule.SyntheticDataModule",
                "num_frames": 4,
                "resolution": 16,
                "batch_size": 2,
                "train_clips": 8,
                "val_clips": 2,
                "shapes": ["square", "circle"],
                "motions": ["left", "right"],
                "object_size": [0.3, 0.35],
            }
        }
    )
    dm = instantiate(cfg.data)
    assert dm.class_names == [
        "square moving left",
        "square moving right",
        "circle moving left",
        "circle moving right",
    ]
    assert next(iter(dm.train_dataloader()))["video"].shape == (2, 3, 4, 16, 16)


def test_video_folder_module_split_loaders_and_labels(ucf_tree: Path) -> None:
    dm = VideoFolderDataModule(
        root=ucf_tree,
        num_frames=3,
        frame_stride=2,
        resolution=16,
        batch_size=2,
        num_workers=0,
        class_from_folder=True,
        val_fraction=0.3,
        seed=1,
    )
    assert dm.num_classes == 2 and dm.class_names == ["ClassA", "ClassB"] and not dm.has_captions
    train_paths = {e.path for e in dm.train_set.entries}
    val_paths = {e.path for e in dm.val_set.entries}
    assert len(val_paths) == 2 and len(train_paths) == 3 and not train_paths & val_paths
    assert not dm.val_set.random_offset and not dm.val_set.hflip and dm.train_set.hflip
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corrupt file may be read
        batches = list(loader) + list(dm.val_dataloader())
    assert len(batches) == 1 + 1
    for batch in batches:
        assert batch["video"].shape[1:] == (3, 3, 16, 16)
        assert batch["label"].dtype == torch.int64
    with pytest.warns(UserWarning, match="broken"):  # the corrupt file is in one of the splits
        for ds in (dm.train_set, dm.val_set):
            for i in range(len(ds)):
                ds[i]
    assert dm.train_set.num_failed_reads + dm.val_set.num_failed_reads >= 1
    labels = dm.sample_labels(5)
    assert labels.shape == (5,) and set(labels.tolist()) <= set(dm.val_set.labels)
    with pytest.raises(ValueError, match="no captions"):
        dm.sample_captions(2)


def test_video_folder_module_val_root_and_cap(ucf_tree: Path, tmp_path: Path) -> None:
    dm = VideoFolderDataModule(
        root=ucf_tree, val_root=ucf_tree, num_frames=2, batch_size=2, num_workers=0, val_max_clips=2
    )
    assert len(dm.train_set) == 5 and len(dm.val_set) == 2 and dm.num_classes == 0
    with pytest.raises(ValueError, match="no class labels"):
        dm.sample_labels(1)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_classes": 3, "class_from_folder": True}, "data.num_classes"),
        ({"num_classes": 2}, "data.num_classes"),
        ({"val_fraction": 0.0}, "data.val_fraction"),
        ({"val_fraction": 0.99}, "data.val_fraction"),
        ({"frame_stride": 0}, "data.frame_stride"),
        ({"val_root": "/nonexistent/val"}, "data.val_root"),
    ],
)
def test_video_folder_module_rejects_bad_values(ucf_tree: Path, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        VideoFolderDataModule(root=ucf_tree, **{"num_workers": 0, "batch_size": 2, **kwargs})
    assert info.value.key == key


def test_fewer_videos_than_a_batch_train_with_a_smaller_batch(ucf_tree: Path) -> None:
    with pytest.warns(UserWarning, match=r"data.batch_size=10 but there are only 4 training videos"):
        dm = VideoFolderDataModule(root=ucf_tree, num_workers=0, batch_size=10, val_fraction=0.2)
    assert dm.batch_size == 4 and len(dm.train_dataloader()) == 1


def test_video_folder_module_missing_or_empty_root(tmp_path: Path) -> None:
    for root in (tmp_path / "missing", tmp_path, None):
        with pytest.raises(ConfigError) as info:
            VideoFolderDataModule(root=root)
        assert info.value.key == "data.root"
        if root is not None:
            assert str(root) in str(info.value)
