"""WebVid (vidgen/data/webvid.py) on a tiny tree in the download script's layout, written by the test:
<root>/results_test_train.csv, results_test_val.csv, videos/<page_dir>/<videoid>.mp4."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import pytest
import torch
from conftest import frame_ids, grey_frames
from torch.utils.data import default_collate

from tests.conftest import compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.webvid import WebVidDataModule, WebVidDataset, read_webvid_csv
from vidgen.io.video import write_mp4

COLUMNS = ["videoid", "contentUrl", "duration", "page_dir", "name"]


def _row(videoid: str, page_dir: str, caption: str) -> dict[str, str]:
    url = f"https://example.invalid/{videoid}.mp4"
    return {
        "videoid": videoid,
        "contentUrl": url,
        "duration": "PT00H00M05S",
        "page_dir": page_dir,
        "name": caption,
    }


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def webvid(tmp_path: Path) -> Path:
    """6 training rows: 4 videos on disk (one corrupt), 1 missing file, 1 row without page_dir; 2 val rows."""
    root = tmp_path / "WebVid"
    videos = root / "videos"
    train = [
        _row("1001", "001_page", "A dog runs on the beach"),
        _row("1002", "001_page", "Clouds  moving\nover a hill"),  # whitespace is normalised
        _row("1003", "002_page", "A red car drives left"),
        _row("1004", "002_page", "Broken file"),
        _row("1005", "002_page", "Never downloaded"),
        _row("1006", "", "No page dir"),
    ]
    val = [_row("2001", "003_page", "Val clip one"), _row("2002", "003_page", "Val clip two")]
    for row, length in zip([*train[:3], *val], [20, 6, 12, 14, 9], strict=True):
        write_mp4(videos / row["page_dir"] / f"{row['videoid']}.mp4", grey_frames(length, 24, 32), fps=25)
    (videos / "002_page" / "1004.mp4").write_bytes(b"not a video")
    _write_csv(root / "results_test_train.csv", train)
    _write_csv(root / "results_test_val.csv", val)
    return root


def _module(root: Path, **kwargs) -> WebVidDataModule:
    settings = {
        "root": root,
        "csv": "results_test_train.csv",
        "val_csv": "results_test_val.csv",
        "num_frames": 4,
        "frame_stride": 3,
        "resolution": 16,
        "batch_size": 2,
        "num_workers": 0,
        **kwargs,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WebVidDataModule(**settings)


def test_csv_rows_become_captioned_entries_and_missing_files_are_counted(webvid: Path) -> None:
    with pytest.warns(
        UserWarning, match=r"1 of the 6 videos .* left out .*1005\.mp4.*; 1 rows have no page_dir"
    ):
        index = read_webvid_csv(webvid / "results_test_train.csv", webvid / "videos")
    assert [e.videoid for e in index.entries] == ["1001", "1002", "1003", "1004"]
    assert [e.path.relative_to(webvid).as_posix() for e in index.entries][:2] == [
        "videos/001_page/1001.mp4",
        "videos/001_page/1002.mp4",
    ]
    assert index.entries[1].caption == "Clouds moving over a hill"
    assert index.rows == 6 and index.no_page_dir == 1 and len(index.missing) == 1
    assert index.summary()["missing_examples"][0].endswith("002_page/1005.mp4")
    capped = read_webvid_csv(webvid / "results_test_train.csv", webvid / "videos", max_videos=2)
    assert len(capped.entries) == 2 and capped.capped == 4
    unchecked = read_webvid_csv(webvid / "results_test_train.csv", webvid / "videos", check_files=False)
    assert len(unchecked.entries) == 5 and not unchecked.missing  # the missing file is found at read time


def test_items_reuse_the_video_folder_clips_and_carry_captions(webvid: Path) -> None:
    data = _module(webvid)
    assert data.has_captions and data.num_classes == 0
    assert len(data.train_set) == 4 and len(data.val_set) == 2
    assert isinstance(data.val_set, WebVidDataset)
    item = data.val_set[0]
    assert set(item) == {"video", "caption", "index"}
    assert item["video"].shape == (3, 4, 16, 16) and item["caption"] == "Val clip one"
    # 14 frames, span (4 - 1) * 3 + 1 = 10: the centred start (14 - 10) // 2 = 2, as VideoFolderDataset
    assert frame_ids(item["video"]) == [2, 5, 8, 11]
    batch = default_collate([data.train_set[i] for i in range(2)])
    assert batch["video"].shape == (2, 3, 4, 16, 16) and len(batch["caption"]) == 2
    assert data.sample_captions(3) == [data.val_set.caption(i) for i in data._val_order(3)]
    assert set(data.sample_captions(4)) == {"Val clip one", "Val clip two"}


def test_a_corrupt_video_is_counted_and_the_next_one_read_with_its_caption(webvid: Path) -> None:
    data = _module(webvid)
    broken = [e.videoid for e in data.train_set.entries].index("1004")
    with pytest.warns(UserWarning, match="skipping unreadable video"):
        item = data.train_set[broken]
    assert item["index"] == (broken + 1) % len(data.train_set)
    assert item["caption"] == data.train_set.entries[item["index"]].caption != "Broken file"
    report = data.report()
    assert report["splits"]["train"]["failed_reads"] == 1
    assert report["splits"]["train"]["failed_examples"][0].endswith("1004.mp4")
    assert [c["missing"] for c in report["csv"]] == [1, 0] and report["csv"][0]["no_page_dir"] == 1
    probed = _module(webvid, probe=True)  # 1002 has 6 frames < 10: left out too (data.short_videos=skip)
    assert len(probed.train_set) == 2 and len(probed.train_set.probe_failures) == 1
    assert [e.videoid for e in probed.train_set.entries] == ["1001", "1003"]
    assert probed.report()["splits"]["train"]["too_short"] == 1
    assert len(_module(webvid, probe=True, short_videos="pad").train_set) == 3


def test_split_without_val_csv_and_evaluation_clips(webvid: Path) -> None:
    (webvid / "videos" / "002_page" / "1004.mp4").unlink()  # the corrupt one: now missing, left out
    data = _module(webvid, val_csv=None, val_fraction=0.25)
    assert len(data.train_set) == 2 and len(data.val_set) == 1 and data.val_index is None
    clips = data.evaluation_dataset(3)  # more clips than validation videos: repeated
    assert len(clips) == 3 and {clips[i]["caption"] for i in range(3)} == {data.val_set.entries[0].caption}
    assert clips[0]["video"].shape == (3, 4, 16, 16)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"csv": "nowhere.csv"}, "data.csv"),
        ({"val_csv": "nowhere.csv"}, "data.val_csv"),
        ({"videos_dir": "clips"}, "data.videos_dir"),
        ({"channels": 1}, "data.channels"),
        ({"max_videos": 0}, "data.max_videos"),
        ({"val_csv": None, "val_fraction": 1.5}, "data.val_fraction"),
    ],
)
def test_bad_settings_name_the_key(webvid: Path, kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _module(webvid, **kwargs)
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize("size", ["10M", "2M"])
def test_the_2m_and_10m_csv_names_are_found_with_their_val_csv(webvid: Path, size: str) -> None:
    (webvid / "results_test_train.csv").rename(webvid / f"results_{size}_train.csv")
    (webvid / "results_test_val.csv").rename(webvid / f"results_{size}_val.csv")
    data = _module(webvid, csv=None, val_csv="auto")
    assert data.train_index.csv.name == f"results_{size}_train.csv"
    assert data.val_index is not None and data.val_index.csv.name == f"results_{size}_val.csv"
    (webvid / f"results_{size}_val.csv").unlink()  # no val CSV: val_fraction of the training CSV
    data = _module(webvid, csv=None, val_csv="auto", val_fraction=0.34)
    assert data.val_index is None and len(data.train_set) + len(data.val_set) == 4  # on disk


def test_no_training_csv_lists_what_was_searched(webvid: Path) -> None:
    (webvid / "results_test_train.csv").unlink()
    with pytest.raises(ConfigError) as info:
        _module(webvid, csv=None)
    assert info.value.key == "data.csv"
    message = str(info.value)
    assert "results_10M_train.csv, results_2M_train.csv and results_*_train.csv" in message
    assert "results_test_val.csv" in message and "data.csv=<file>" in message


def test_fewer_videos_than_a_batch_shrink_the_batch(webvid: Path) -> None:
    with pytest.warns(UserWarning, match="data.batch_size=8 but there are only 4 training videos"):
        data = WebVidDataModule(
            root=webvid, csv="results_test_train.csv", batch_size=8, num_workers=0, resolution=16
        )
    assert data.batch_size == 4


def test_missing_root_and_no_video_on_disk_fail_clearly(webvid: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.root") as info:
        _module(tmp_path / "nowhere")
    assert info.value.key == "data.root"
    _write_csv(webvid / "gone.csv", [_row("9", "009_page", "gone")])
    with pytest.raises(ConfigError, match=r"videos/<page_dir>/<videoid>\.mp4") as info:
        _module(webvid, csv="gone.csv")
    assert info.value.key == "data.csv"
    (webvid / "bad.csv").write_text("id,caption\n1,x\n")
    with pytest.raises(ConfigError, match="lacks the WebVid columns"):
        _module(webvid, csv="bad.csv")


def test_the_data_config_builds_the_module(webvid: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "data=webvid",
            f"data.root={webvid}",
            "data.csv=results_test_train.csv",
            "data.val_csv=results_test_val.csv",
            "data.resolution=16",
            "data.num_frames=4",
            "data.batch_size=2",
            "data.num_workers=0",
        ],
        run_dir=tmp_path / "run",
    )
    assert cfg.conditioner.kind == "text" and cfg.diffusion.schedule == "scaled_linear"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = instantiate_node(cfg.data)
    assert isinstance(data, WebVidDataModule) and data.name == "webvid"
    batch = next(iter(data.train_dataloader()))
    assert batch["video"].shape == (2, 3, 4, 16, 16) and all(isinstance(c, str) for c in batch["caption"])
    assert torch.isfinite(batch["video"]).all()


def test_joint_training_images_carry_their_own_videos_captions(webvid: Path) -> None:
    data = _module(webvid, joint_image_frames=3)
    dataset = data.training_dataset()
    item = dataset[0]
    assert item["video"].shape == (3, 4 + 3, 16, 16) and len(item["image_captions"]) == 3
    for (source, _), caption in zip(item["image_sources"].tolist(), item["image_captions"]):
        assert caption == data.train_set.caption(source) and source != item["index"]
