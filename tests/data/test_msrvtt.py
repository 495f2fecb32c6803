"""MSR-VTT (data=msrvtt): the 2016 annotation files' splits and captions, the 1k-A split files, one caption
drawn per training sample (seeded, varying over epochs), the first caption for evaluation or every pair."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import pytest

from tests.data.real_layouts import msrvtt
from vidgen.config.errors import ConfigError
from vidgen.data.msrvtt import MSRVTTDataModule, read_msrvtt_annotations


def _module(root: Path, **kwargs) -> MSRVTTDataModule:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the layout's missing video is reported (tested in test_real_layouts)
        return MSRVTTDataModule(
            root=root, num_frames=2, frame_stride=1, resolution=8, batch_size=2, num_workers=0, **kwargs
        )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return msrvtt(tmp_path_factory.mktemp("msrvtt")).root


def test_the_2016_files_give_three_splits_and_every_caption(root: Path) -> None:
    splits, captions = read_msrvtt_annotations(root / "train_val_videodatainfo.json")
    # train_val holds train (video0-6) and validate (video7-8); test_videodatainfo.json beside it adds video9-10
    assert [v for v, s in splits.items() if s == "train"] == [f"video{i}" for i in range(7)]
    assert [v for v, s in splits.items() if s == "val"] == ["video7", "video8"]
    assert [v for v, s in splits.items() if s == "test"] == ["video9", "video10"]
    assert captions["video9"] == ["video 9 caption 0", "video 9 caption 1", "video 9 caption 2"]


def test_an_unknown_split_or_a_missing_file_names_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "train_val_videodatainfo.json"
    bad.write_text(json.dumps({"videos": [{"video_id": "v", "split": "dev"}], "sentences": []}))
    with pytest.raises(ConfigError, match="unknown split") as info:
        read_msrvtt_annotations(bad)
    assert info.value.key == "data.annotations"
    with pytest.raises(ConfigError, match="does not exist"):
        read_msrvtt_annotations(tmp_path / "absent.json")


def test_training_draws_one_caption_per_sample_seeded_and_evaluation_uses_the_first(root: Path) -> None:
    module = _module(root)
    train = module.train_set
    # video0-5 on disk (video6 missing): the training side keeps the ones on disk
    assert [e.video_id for e in module.sides["train"]] == [f"video{i}" for i in range(6)]
    draws = {epoch: [] for epoch in range(6)}
    for epoch in draws:
        train.set_epoch(epoch)
        draws[epoch] = [train.caption(i) for i in range(len(train))]
    for i, entry in enumerate(module.sides["train"]):
        seen = {draws[epoch][i] for epoch in draws}
        assert seen <= set(entry.captions)
    assert len({tuple(d) for d in draws.values()}) > 1  # the draw changes with the epoch
    train.set_epoch(3)
    assert [train.caption(i) for i in range(len(train))] == draws[
        3
    ]  # and is a function of (seed, epoch, index)
    # evaluation: the test videos with their first caption, in annotation order, repeated as needed
    assert module.sample_captions(3) == ["video 9 caption 0", "video 10 caption 0", "video 9 caption 0"]
    pairs = _module(root, eval_captions="all").sample_captions(6)
    assert pairs == [f"video {v} caption {k}" for v in (9, 10) for k in range(3)]


def test_the_1k_a_protocol_reads_its_split_files(root: Path, tmp_path: Path) -> None:
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    with open(train_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_id"])
        writer.writerows([["video2"], ["video3"], ["video7"]])
    with open(test_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        writer.writerow(["ret0", "msr9", "video9", "a  JSFusion   sentence"])
    module = _module(root, protocol="1k-A", train_csv=str(train_csv), test_csv=str(test_csv))
    assert [e.video_id for e in module.sides["train"]] == ["video2", "video3", "video7"]
    assert [e.video_id for e in module.sides["test"]] == ["video9"]
    # the test video is scored with its one JSFusion sentence (whitespace normalised), not the JSON's captions
    assert module.sample_captions(1) == ["a JSFusion sentence"]
