"""Image-video joint training on the data side (``data.joint_image_frames``) and the synthetic data's
``frame_stride``.

Checked: training batches are ``(B, C, F + K, H, W)`` with ``num_video_frames = F``; the first ``F`` frames
are the clip itself and each of the ``K`` extra frames is, pixel for pixel, one frame of ANOTHER clip of the
same split (the recorded source, never the clip itself); ``K = 0`` leaves the batches untouched; the draws
are deterministic, change with the epoch and survive a mid-epoch resume; validation and evaluation data stay
plain ``F``-frame clips; video folders (with an unreadable file among them) behave the same; the synthetic
``frame_stride`` renders every s-th frame of a longer motion.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.data.conftest import frame_ids
from vidgen.config.errors import ConfigError
from vidgen.data import SyntheticDataModule, SyntheticVideoDataset, VideoFolderDataModule
from vidgen.data.joint import JointImageFrames

F, K, B = 4, 3, 4


def _synthetic(**kwargs: object) -> SyntheticDataModule:
    settings: dict[str, object] = {
        "num_frames": F,
        "resolution": 16,
        "batch_size": B,
        "train_clips": 24,
        "val_clips": 4,
    }
    settings.update(kwargs)
    return SyntheticDataModule(**settings)  # type: ignore[arg-type]


def _batches(loader: object, count: int) -> list[dict]:
    out = []
    for batch in loader:  # type: ignore[attr-defined]
        out.append(batch)
        if len(out) == count:
            break
    return out


def test_joint_batches_append_frames_of_other_clips() -> None:
    dm = _synthetic(joint_image_frames=K)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (B, 3, F + K, 16, 16)
    assert batch["num_video_frames"].dtype == torch.long
    assert batch["num_video_frames"].tolist() == [F] * B
    assert batch["image_sources"].shape == (B, K, 2)
    for b in range(B):
        own = int(batch["index"][b])
        clip = dm.train_set[own]["video"]
        assert torch.equal(batch["video"][b, :, :F], clip)  # the clip frames are the clip, in order
        for k in range(K):
            source, t = (int(v) for v in batch["image_sources"][b, k])
            assert source != own and 0 <= source < len(dm.train_set) and 0 <= t < F
            image = batch["video"][b, :, F + k]
            assert torch.equal(image, dm.train_set[source]["video"][:, t])  # pixel-equal to its source
            # and it is no frame of the clip it was appended to (different object / colour / place)
            assert not any(torch.equal(image, clip[:, i]) for i in range(F))
    # the sources differ from image to image (independent draws)
    assert len({tuple(map(int, s)) for s in batch["image_sources"].flatten(0, 1)}) > 1


def test_image_frames_never_come_from_the_clip_itself() -> None:
    # 2 training clips: every image must come from the one other clip
    dm = _synthetic(joint_image_frames=5, train_clips=2, batch_size=2)
    dataset = dm.training_dataset()
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(2):
            item = dataset[index]
            assert item["image_sources"][:, 0].tolist() == [1 - index] * 5
            captions = {dm.train_set.describe(int(s)).caption for s in item["image_sources"][:, 0]}
            assert captions == {dm.train_set.describe(1 - index).caption}


def test_zero_image_frames_leaves_the_batches_unchanged() -> None:
    plain = _batches(_synthetic().train_dataloader(), 2)
    zero = _batches(_synthetic(joint_image_frames=0).train_dataloader(), 2)
    for a, b in zip(plain, zero, strict=True):
        assert set(a) == set(b) == {"video", "label", "caption", "index"}
        assert a["video"].shape == (B, 3, F, 16, 16)
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
    # the clip frames of a joint batch are exactly the plain batch
    joint = _batches(_synthetic(joint_image_frames=K).train_dataloader(), 2)
    for a, j in zip(plain, joint, strict=True):
        assert torch.equal(a["index"], j["index"]) and torch.equal(a["video"], j["video"][:, :, :F])


def test_draws_are_deterministic_per_epoch_and_resume_mid_epoch() -> None:
    first = _batches(_synthetic(joint_image_frames=K).train_dataloader(), 3)
    again = _batches(_synthetic(joint_image_frames=K).train_dataloader(), 3)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["image_sources"], b["image_sources"])

    # the same clip gets other images in another epoch
    dataset = _synthetic(joint_image_frames=K).training_dataset()
    dataset.set_epoch(0)
    epoch0 = dataset[5]["image_sources"]
    dataset.set_epoch(1)
    assert not torch.equal(epoch0, dataset[5]["image_sources"])
    dataset.set_epoch(0)
    assert torch.equal(epoch0, dataset[5]["image_sources"])

    # resume after 2 batches: the third batch is the uninterrupted run's third batch
    loader = _synthetic(joint_image_frames=K).train_dataloader()
    state = None
    for n, _ in enumerate(loader, start=1):
        if n == 2:
            state = loader.state_dict()
            break
    resumed = _synthetic(joint_image_frames=K).train_dataloader()
    resumed.load_state_dict(state)
    third = next(iter(resumed))
    assert torch.equal(third["video"], first[2]["video"])
    assert torch.equal(third["image_sources"], first[2]["image_sources"])


def test_validation_and_evaluation_data_stay_plain_clips() -> None:
    dm = _synthetic(joint_image_frames=K)
    val = next(iter(dm.val_dataloader()))
    assert val["video"].shape[2] == F and "num_video_frames" not in val
    item = dm.evaluation_dataset(2)[0]
    assert item["video"].shape[1] == F and "num_video_frames" not in item


def test_joint_image_frames_config_errors() -> None:
    with pytest.raises(ConfigError) as info:
        _synthetic(joint_image_frames=-1)
    assert info.value.key == "data.joint_image_frames"
    with pytest.raises(ConfigError) as info:  # a single training clip has no other clip to take frames from
        _synthetic(joint_image_frames=1, train_clips=1, batch_size=1)
    assert info.value.key == "data.joint_image_frames"
    with pytest.raises(ConfigError):
        JointImageFrames(_synthetic().train_set, 0)


def test_video_folder_joint_frames_come_from_other_videos(ucf_tree: Path) -> None:
    dm = VideoFolderDataModule(
        root=ucf_tree,
        num_frames=3,
        frame_stride=2,
        resolution=16,
        batch_size=2,
        num_workers=0,
        val_fraction=0.2,
        class_from_folder=True,
        hflip=False,
        joint_image_frames=4,
    )
    with pytest.warns(UserWarning, match="unreadable"):  # broken.mp4 is among the training videos
        batches = []
        dataset = dm.training_dataset()
        for epoch in range(4):
            dataset.set_epoch(epoch)
            batches += [dataset[i] for i in range(len(dataset))]
    entries = dm.train_set.entries
    for item in batches:
        video = item["video"]
        assert video.shape == (3, 3 + 4, 16, 16) and item["num_video_frames"] == 3
        own = int(item["index"])
        ids = frame_ids(video)
        assert ids[1] - ids[0] == 2  # the clip itself keeps its stride
        for k, (source, t) in enumerate(item["image_sources"].tolist()):
            assert source != own and "broken" not in entries[source].path.name
            # the grey level of the appended frame is the recorded frame of the source video
            available = dm.train_set._num_available(entries[source])
            assert ids[3 + k] == t and 0 <= t < available
            # each image's own label: its source video's class folder
            assert int(item["image_labels"][k]) == dm.train_set.labels[source]


def test_synthetic_frame_stride_renders_every_sth_frame_of_a_longer_motion() -> None:
    long = SyntheticVideoDataset(num_clips=12, num_frames=22, resolution=16)
    strided = SyntheticVideoDataset(num_clips=12, num_frames=8, resolution=16, frame_stride=3)
    plain = SyntheticVideoDataset(num_clips=12, num_frames=8, resolution=16)
    for i in range(12):
        assert torch.equal(strided[i]["video"], long[i]["video"][:, ::3])
        spec = strided.describe(i)
        assert spec.frame_stride == 3 and spec.primary.positions.shape == (8, 2)
        assert torch.allclose(spec.primary.positions, long.describe(i).primary.positions[::3])
        # the same object, motion kind and speed (per frame of the underlying motion) as without the stride
        assert spec.caption == plain.describe(i).caption
        assert spec.primary.velocity == pytest.approx(plain.describe(i).primary.velocity)
    with pytest.raises(ConfigError) as info:
        SyntheticVideoDataset(num_clips=2, frame_stride=0)
    assert info.value.key == "data.frame_stride"
    # the data module passes it on to every split (evaluation clips included)
    dm = _synthetic(frame_stride=2)
    assert dm.train_set.frame_stride == dm.val_set.frame_stride == dm.evaluation_dataset(2).frame_stride == 2


def test_render_frames_matches_the_full_render() -> None:
    dataset = SyntheticVideoDataset(num_clips=3, num_frames=6, resolution=16, max_objects=2)
    spec = dataset.describe(1)
    full = dataset.render(spec)
    assert torch.equal(dataset.render_frames(spec, [4, 0]), full[:, [4, 0]])
    with pytest.raises(IndexError):
        dataset.render_frames(spec, [6])


def test_joint_items_carry_each_images_own_label_and_caption() -> None:
    """``image_labels`` / ``image_captions`` are those of each image's source clip (not the clip's own)."""
    dm = _synthetic(joint_image_frames=K)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_labels"].shape == (B, K) and batch["image_labels"].dtype == torch.long
    captions = batch["image_captions"]  # the default collate: K sequences of B strings
    assert len(captions) == K and all(len(column) == B for column in captions)
    for b in range(B):
        for k in range(K):
            spec = dm.train_set.describe(int(batch["image_sources"][b, k, 0]))
            assert int(batch["image_labels"][b, k]) == spec.label
            assert captions[k][b] == spec.caption
