"""VideoFolderDataset on a tiny UCF101-like tree (see conftest.ucf_tree)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from conftest import frame_ids

from vidgen.config.errors import ConfigError
from vidgen.data.video_folder import VideoFolderDataset, clip_frame_indices, list_videos
from vidgen.io.video import write_png


def names(dataset: VideoFolderDataset) -> list[str]:
    return [e.path.name for e in dataset.entries]


def test_listing_is_sorted_and_finds_files_and_frame_folders(ucf_tree: Path) -> None:
    entries = list_videos(ucf_tree)
    assert [e.path.relative_to(ucf_tree).as_posix() for e in entries] == [
        "ClassA/a1.mp4",
        "ClassA/a2.mp4",
        "ClassB/b1.mp4",
        "ClassB/broken.mp4",
        "ClassB/clip_frames",
    ]
    assert [e.is_frame_folder for e in entries] == [False, False, False, False, True]
    assert [e.group for e in entries] == ["ClassA", "ClassA", "ClassB", "ClassB", "ClassB"]
    assert [e.path.name for e in list_videos(ucf_tree, extensions=("avi",))] == ["clip_frames"]


def test_centred_clips_shape_stride_and_labels(ucf_tree: Path) -> None:
    ds = VideoFolderDataset(
        ucf_tree, num_frames=4, frame_stride=3, resolution=16, class_from_folder=True, random_offset=False
    )
    assert ds.class_names == ["ClassA", "ClassB"] and ds.num_classes == 2
    assert ds.labels == [0, 0, 1, 1, 1]
    a1 = ds[0]
    assert set(a1) == {"video", "label", "index"}
    assert a1["video"].shape == (3, 4, 16, 16) and a1["video"].dtype == torch.float32
    assert a1["video"].min() >= -1 and a1["video"].max() <= 1
    assert a1["label"] == 0 and a1["index"] == 0
    # 20 frames, span (4 - 1) * 3 + 1 = 10: centred start (20 - 10) // 2 = 5
    assert frame_ids(a1["video"]) == [5, 8, 11, 14]
    # a2 has 6 frames < span: starts at 0, padded with its last frame
    assert frame_ids(ds[1]["video"]) == [0, 3, 5, 5]
    frames_item = ds[4]
    assert frames_item["label"] == 1
    assert frame_ids(frames_item["video"]) == [1, 4, 7, 10]  # 12 frames: start (12 - 10) // 2 = 1
    assert ds.num_failed_reads == 0


def test_random_offsets_are_seeded_per_index_and_epoch(ucf_tree: Path) -> None:
    ds = VideoFolderDataset(ucf_tree, num_frames=3, frame_stride=2, resolution=8, random_offset=True, seed=5)
    starts = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        ids = frame_ids(ds[0]["video"])
        assert ids[1] - ids[0] == 2 and ids[2] - ids[1] == 2
        assert 0 <= ids[0] <= 20 - 5
        starts.append(ids[0])
    assert len(set(starts)) > 2
    again = VideoFolderDataset(
        ucf_tree, num_frames=3, frame_stride=2, resolution=8, random_offset=True, seed=5
    )
    again.set_epoch(3)
    assert frame_ids(again[0]["video"]) == [starts[3], starts[3] + 2, starts[3] + 4]


def test_corrupt_file_is_counted_and_skipped(ucf_tree: Path) -> None:
    ds = VideoFolderDataset(ucf_tree, num_frames=2, resolution=8, class_from_folder=True)
    assert names(ds)[3] == "broken.mp4"
    with pytest.warns(UserWarning, match=r"broken\.mp4.*1 failed reads"):
        item = ds[3]
    assert item["index"] == 4  # the next video (the frame folder) is returned instead
    assert ds.num_failed_reads == 1 and ds.failed_paths[0].endswith("broken.mp4")


def test_probe_reports_and_excludes_unreadable_videos(ucf_tree: Path) -> None:
    with pytest.warns(UserWarning, match=r"1 of 5 videos .* unreadable.*broken\.mp4"):
        ds = VideoFolderDataset(ucf_tree, num_frames=2, resolution=8, class_from_folder=True, probe=True)
    assert names(ds) == ["a1.mp4", "a2.mp4", "b1.mp4", "clip_frames"]
    assert ds.labels == [0, 0, 1, 1]
    assert len(ds.probe_failures) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(len(ds)):
            assert ds[i]["index"] == i


def test_short_videos_are_skipped_or_padded(ucf_tree: Path, tmp_path: Path) -> None:
    """a2.mp4 has 6 frames, a clip of 4 every 3rd spans 10: skipped like an unreadable video (the next one is
    read, counted, named with its reason), or padded with its last frame."""
    from vidgen.data.bad_videos import BadVideoLog

    options = {"num_frames": 4, "frame_stride": 3, "resolution": 8, "random_offset": False}
    skip = VideoFolderDataset(ucf_tree, short_videos="skip", **options)
    with pytest.warns(
        UserWarning, match=r"skipping '.*a2\.mp4' \(too short: 6 frames, needs 10; data\.short"
    ):
        item = skip[1]
    assert item["index"] == 2 and skip.num_short_skipped == 1 and skip.short_paths[0].endswith("a2.mp4")
    log = BadVideoLog(tmp_path / "log")
    skip.attach_bad_video_log(log)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recorded in the log, not warned
        assert skip[1]["index"] == 2
    assert list(log.read()["too_short"].items()) == [
        (str(ucf_tree / "ClassA" / "a2.mp4"), "too short: 6 frames, needs 10")
    ]
    pad = VideoFolderDataset(ucf_tree, short_videos="pad", **options)
    pad.attach_bad_video_log(BadVideoLog(tmp_path / "pad"))
    assert frame_ids(pad[1]["video"]) == [0, 3, 5, 5] and pad.num_short_skipped == 0
    assert list(BadVideoLog(tmp_path / "pad").read()["too_short"].values()) == [
        "too short: 6 frames, needs 10; padded with its last frame"
    ]
    with pytest.raises(ConfigError, match=r"must be one of skip, pad \(.*\), got 'drop'") as error:
        VideoFolderDataset(ucf_tree, short_videos="drop", **options)
    assert error.value.key == "data.short_videos"


def test_every_video_too_short_fails_with_the_fix(ucf_tree: Path) -> None:
    options = {"num_frames": 8, "frame_stride": 4, "resolution": 8, "short_videos": "skip"}  # spans 29 frames
    with (
        pytest.raises(
            ConfigError, match=r"1 unreadable, 4 shorter than 29 frames \(lower data.num_frames"
        ) as error,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        VideoFolderDataset(ucf_tree, probe=True, **options)
    assert error.value.key == "data.root"
    ds = VideoFolderDataset(ucf_tree, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RuntimeError, match=r"4 too short for 29 frames: .*data.short_videos=pad"):
            ds[0]


def test_resize_short_side_then_centre_crop(tmp_path: Path) -> None:
    # one frame folder, 20 x 40 (H x W): left half black, right half white
    image = torch.zeros(3, 20, 40, dtype=torch.uint8)
    image[:, :, 20:] = 255
    for k in range(3):
        path = tmp_path / "wide" / f"{k}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, image)
    ds = VideoFolderDataset(tmp_path, num_frames=2, resolution=10, random_offset=False)
    video = ds[0]["video"]
    assert video.shape == (3, 2, 10, 10)
    # short side 20 -> 10, width 40 -> 20, centre crop columns 5..15: left half dark, right half bright
    assert (video[:, :, :, :4] < -0.9).all() and (video[:, :, :, 6:] > 0.9).all()


def test_hflip_is_random_per_epoch_and_deterministic(tmp_path: Path) -> None:
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    image[:, :, 4:] = 255
    path = tmp_path / "clip" / "0.png"
    path.parent.mkdir(parents=True)
    write_png(path, image)
    ds = VideoFolderDataset(tmp_path, num_frames=1, resolution=8, hflip=True)
    flipped = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        video = ds[0]["video"]
        flipped.append(bool(video[0, 0, 0, 0] > 0))
        assert torch.equal(video, ds[0]["video"])
    assert any(flipped) and not all(flipped)


def test_missing_and_empty_roots_fail_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "does_not_exist"
    with pytest.raises(ConfigError, match="does_not_exist") as info:
        VideoFolderDataset(missing, num_frames=2)
    assert info.value.key == "data.root" and str(info.value).startswith("data.root")
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no videos here")
    with pytest.raises(ConfigError, match=r"no video files \(\.mp4, \.avi.*empty") as info:
        VideoFolderDataset(empty, num_frames=2)
    assert info.value.key == "data.root"


def test_bad_values_and_loose_videos(ucf_tree: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.num_frames"):
        VideoFolderDataset(ucf_tree, num_frames=0)
    with pytest.raises(ConfigError, match=r"data\.frame_stride"):
        VideoFolderDataset(ucf_tree, frame_stride=0)
    (ucf_tree / "loose.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"data.class_from_folder.*loose\.mp4"):
        VideoFolderDataset(ucf_tree, class_from_folder=True)


def test_clip_frame_indices() -> None:
    assert clip_frame_indices(10, 3, 2, None) == [2, 4, 6]
    assert clip_frame_indices(3, 4, 1, None) == [0, 1, 2, 2]
    assert clip_frame_indices(1, 2, 5, None) == [0, 0]
