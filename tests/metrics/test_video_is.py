"""UCF101 video IS: a tiny randomly initialised C3D saved in the real state-dict layout and read back through the
metric's loading path; the IS formula checked on hand-made probabilities."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vidgen.metrics.c3d import C3D, C3D_WEIGHTS, VideoIS, c3d_clips, load_c3d, video_is_protocol
from vidgen.metrics.inception import inception_score
from vidgen.metrics.weights import MissingWeightsError

TINY = {"widths": (2, 4, 4, 4, 4), "hidden": 8, "num_classes": 101}
EXPECTED_KEYS = [
    f"{layer}.{kind}"
    for layer in (
        "conv1",
        "conv2",
        "conv3a",
        "conv3b",
        "conv4a",
        "conv4b",
        "conv5a",
        "conv5b",
        "fc6",
        "fc7",
        "fc8",
    )
    for kind in ("weight", "bias")
] + ["mean"]


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = C3D(**TINY)
    for name, param in model.named_parameters():  # larger weights than the default so predictions differ
        if name.endswith("weight"):
            torch.nn.init.normal_(param, std=0.5 if name.startswith("conv") else 1.0)
    model.mean.uniform_(60.0, 120.0)
    return model.state_dict()


@pytest.fixture
def c3d_weights(tmp_path) -> Path:
    path = tmp_path / C3D_WEIGHTS
    torch.save(tiny_state(), path)
    return path


def videos(n: int, frames: int = 16, size: int = 24, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, frames, size, size, 3), generator=generator, dtype=torch.uint8)


def test_key_layout_and_full_size():
    assert sorted(C3D(**TINY).state_dict()) == sorted(EXPECTED_KEYS)
    with torch.device("meta"):
        full = C3D()
    assert full.fc8.out_features == 101 and full.fc6.in_features == 8192
    assert sum(p.numel() for p in full.parameters()) == 78_409_573  # C3D with a 101-way fc8


def test_preprocessing_uses_first_16_frames_bgr_and_mean():
    clip = torch.zeros(1, 20, 8, 10, 3, dtype=torch.uint8)
    clip[..., 0] = 255  # pure red
    clip[:, 16:] = 7  # frames after the 16th must not be read
    mean = torch.full((3, 16, 112, 112), 100.0)
    out = c3d_clips(clip, mean)
    assert out.shape == (1, 3, 16, 112, 112) and out.dtype == torch.float32
    scale = 128.0 / 127.5
    assert torch.allclose(out[0, 2], torch.full((16, 112, 112), 255 * scale - 100))  # red is channel 2 in BGR
    assert torch.allclose(out[0, :2], torch.full((2, 16, 112, 112), -100.0))
    with pytest.raises(ValueError, match="16 frames"):
        c3d_clips(clip[:, :15], mean)


def test_identical_videos_score_one(c3d_weights):
    metric = VideoIS(weights=c3d_weights, batch_size=2, device="cpu")
    metric.update_fake(videos(1).repeat(4, 1, 1, 1, 1))
    probs = metric.probabilities()
    assert probs.shape == (4, 101)
    assert metric.compute() == pytest.approx({"video_is": 1.0, "video_is/std": 0.0}, abs=1e-9)


def test_score_bounded_and_matches_formula(c3d_weights):
    metric = VideoIS(weights=c3d_weights, splits=2, batch_size=3, device="cpu")
    metric.update_fake(videos(4, seed=1))
    metric.update_fake(videos(2, seed=2))
    probs = metric.probabilities()
    assert probs.shape == (6, 101)
    result = metric.compute()
    assert (result["video_is"], result["video_is/std"]) == pytest.approx(inception_score(probs, 2))
    assert 1.0 <= result["video_is"] <= 3.0  # at most min(classes, samples per split)
    assert result["video_is"] <= 101


def test_inception_score_on_stub_probabilities():
    classes = 5
    confident = torch.eye(classes).repeat(3, 1)  # 15 one-hot rows cycling over 5 classes
    assert inception_score(confident, 1) == pytest.approx(
        (classes, 0.0)
    )  # the upper bound: number of classes
    assert inception_score(torch.full((6, classes), 1 / classes), 1) == pytest.approx((1.0, 0.0))
    # consecutive splits: the first half only predicts class 0, the second only class 1
    blocks = torch.cat([torch.eye(2)[[0, 0, 0]], torch.eye(2)[[1, 1, 1]]])
    assert inception_score(blocks, 1)[0] == pytest.approx(2.0)
    assert inception_score(blocks, 2) == pytest.approx((1.0, 0.0))
    # p = [1, 0] and [0.5, 0.5]: marginal [0.75, 0.25]; mean KL = (log 4/3 + 0.5 log 4/3) / 2
    assert inception_score(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), 1)[0] == pytest.approx(
        math.exp(0.75 * math.log(4 / 3))
    )
    # two splits with scores 2 and 1: mean 1.5, population std 0.5
    uneven = torch.cat([torch.eye(2), torch.full((2, 2), 0.5)])
    assert inception_score(uneven, 2) == pytest.approx((1.5, 0.5))
    with pytest.raises(ValueError, match="sum to 1"):
        inception_score(torch.rand(4, 3) + 0.1, 1)


def test_checkpoint_variants(tmp_path):
    state = tiny_state()
    reference = load_c3d(_save(tmp_path / "plain.pth", state))
    renamed = {
        ("module." + k.replace("conv1.", "conv1a.").replace("conv2.", "conv2a.")): v for k, v in state.items()
    }
    wrapped = load_c3d(_save(tmp_path / "wrapped.pth", {"state_dict": renamed, "epoch": 3}))
    for key, value in reference.state_dict().items():
        assert torch.equal(wrapped.state_dict()[key], value)

    no_mean = {k: v for k, v in state.items() if k != "mean"}
    with pytest.warns(UserWarning, match="per-channel"):
        fallback = load_c3d(_save(tmp_path / "no_mean.pth", no_mean))
    assert fallback.mean[:, 0, 0, 0].tolist() == pytest.approx([90.25164795, 97.65701294, 101.4083252])

    script = tmp_path / "c3d_ucf101.pt"
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    with pytest.raises(ValueError, match="TorchScript"):
        load_c3d(script)
    broken = dict(state)
    broken["fc7.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="does not fit C3D"):
        load_c3d(_save(tmp_path / "broken.pth", broken))


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_missing_weights_and_bad_inputs(tmp_path, monkeypatch, c3d_weights):
    monkeypatch.setenv("VIDGEN_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match=rf"'video_is'.*{C3D_WEIGHTS}"):
        VideoIS(device="cpu").update_fake(videos(1))
    metric = VideoIS(weights=c3d_weights, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        metric.update_fake(videos(1).float())
    with pytest.raises(ValueError, match="16 frames"):
        metric.update_fake(videos(1, frames=8))
    with pytest.raises(ValueError, match="num_frames"):
        VideoIS(num_frames=8)


def test_protocol_is_named():
    default = VideoIS()
    assert (default.num_fake_wanted, default.splits, default.num_frames) == (2048, 1, 16)
    assert "StyleGAN-V" in default.describe()["video_is"]
    assert "TGANv2" in VideoIS(num_fake=10000, splits=10).describe()["video_is/std"]
    assert video_is_protocol(100, 2).startswith("custom")
