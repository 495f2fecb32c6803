"""Frame FID / IS: a randomly initialised FID Inception saved as a state dict and read back through the real
loading path (torchmetrics / torch-fidelity with a local weights path); nothing is downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from vidgen.metrics.inception import (
    FrameFID,
    FrameIS,
    evenly_spaced_indices,
    inception_frames,
    inception_score,
)
from vidgen.metrics.weights import MissingWeightsError

torch_fidelity_inception = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")


def _no_download(*args, **kwargs):
    raise AssertionError(f"a download was attempted: {args} {kwargs}")


@pytest.fixture(autouse=True)
def forbid_downloads(monkeypatch):
    monkeypatch.setattr(torch_fidelity_inception, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    """A random FID Inception state dict with exactly torch-fidelity's keys, built without any download: the URL
    loader returns nothing and loading is skipped, so the module keeps its own random initialisation."""
    extractor = torch_fidelity_inception.FeatureExtractorInceptionV3
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch_fidelity_inception, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(extractor, "load_state_dict", lambda self, state, *a, **k: None)
        net = extractor("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for module in net.modules():  # variance-preserving init so that deep features do not vanish
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.05)
    path = tmp_path_factory.mktemp("weights") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def smooth_videos(n: int, frames: int = 2, size: int = 24, seed: int = 0) -> torch.Tensor:
    """``(n, frames, size, size, 3)`` uint8 videos made of random low-frequency patterns."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n * frames, 3, 4, 4, generator=generator)
    frames_ = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return (
        (frames_ * 255)
        .round()
        .to(torch.uint8)
        .view(n, frames, 3, size, size)
        .permute(0, 1, 3, 4, 2)
        .contiguous()
    )


def noise_videos(n: int, frames: int = 2, size: int = 24, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, frames, size, size, 3), generator=generator, dtype=torch.uint8)


def test_frame_selection_and_layout():
    assert evenly_spaced_indices(16, None).tolist() == list(range(16))
    assert evenly_spaced_indices(16, 4).tolist() == [0, 5, 10, 15]
    assert evenly_spaced_indices(16, 1).tolist() == [7]
    with pytest.raises(ValueError, match="frames"):
        evenly_spaced_indices(4, 5)
    videos = torch.zeros(2, 5, 3, 4, 3, dtype=torch.uint8)
    videos[:, :, 0, 0, 0] = torch.arange(10, dtype=torch.uint8).view(2, 5)  # frame id in one pixel
    frames = inception_frames(videos, 3)
    assert frames.shape == (6, 3, 3, 4) and frames.dtype == torch.uint8
    assert frames[:, 0, 0, 0].tolist() == [0, 2, 4, 5, 7, 9]  # clip-major, evenly spaced, values untouched


def test_fid_zero_for_same_positive_for_noise_and_cached_real_state(inception_weights):
    real = smooth_videos(5, frames=3)
    same = FrameFID(weights=inception_weights, feature=64, frames_per_clip=2, batch_size=16, device="cpu")
    same.update_real(real)
    state = same.real_state()
    assert int(state["num"]) == 5 * 2  # 2 of the 3 frames of each clip
    assert state["sum"].shape == (64,) and state["sum_outer"].shape == (64, 64)
    same.update_fake(real)
    fid_same = same.compute()["fid"]
    assert same._fid.inception.use_antialias is False  # TF-compatible resize of the reference FID

    fresh = FrameFID(weights=inception_weights, feature=64, frames_per_clip=2, batch_size=16, device="cpu")
    fresh.update_real(real)
    fresh.update_fake(noise_videos(5, frames=3))
    fid_noise = fresh.compute()["fid"]
    assert fid_noise > 0
    assert abs(fid_same) < 1e-3 * fid_noise

    cached = FrameFID(weights=inception_weights, feature=64, frames_per_clip=2, batch_size=16, device="cpu")
    cached.load_real_state(state)  # before the network exists, as the evaluator does on a cache hit
    cached.update_fake(noise_videos(5, frames=3))
    assert cached.compute()["fid"] == pytest.approx(fid_noise, rel=1e-6)
    assert cached.real_cache_key()["frames_per_clip"] == 2
    with pytest.raises(ValueError, match="shapes"):
        FrameFID(weights=inception_weights, feature=2048).load_real_state(state)


def test_is_at_least_one_and_respects_splits(inception_weights):
    videos = smooth_videos(1, frames=2)  # 2 frames (the full Inception is slow on CPU)
    metric = FrameIS(weights=inception_weights, splits=1, batch_size=2, device="cpu")
    metric.update_fake(videos)
    probs = metric.probabilities()
    assert probs.shape == (2, 1008)
    assert probs.sum(dim=1) == pytest.approx(torch.ones(2, dtype=torch.float64))
    whole = metric.compute()
    assert whole["is"] > 1.0 and whole["is/std"] == 0.0
    assert whole["is"] == pytest.approx(inception_score(probs, 1)[0])

    metric.splits = 2  # one frame per split: the KL of a sample to itself is 0, so IS is exactly 1
    assert metric.compute() == pytest.approx({"is": 1.0, "is/std": 0.0})
    metric.splits = 3
    with pytest.raises(ValueError, match="splits"):
        metric.compute()


def test_inception_score_formula_on_known_probabilities():
    one_hot = torch.eye(4).repeat(2, 1)  # 8 confident samples spread evenly over 4 classes
    assert inception_score(one_hot, 1) == pytest.approx((4.0, 0.0))
    assert inception_score(one_hot, 2) == pytest.approx((4.0, 0.0))
    mixed = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert inception_score(mixed, 1)[0] == pytest.approx(math.exp(0.75 * math.log(4 / 3)))


def test_missing_weights_name_file_and_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDGEN_WEIGHTS", str(tmp_path))
    fid = FrameFID(device="cpu")
    with pytest.raises(MissingWeightsError, match=r"'fid'.*pt_inception-2015-12-05-6726825d\.pth"):
        fid.required_files()[0].check()
    with pytest.raises(MissingWeightsError, match="pt_inception"):
        fid.update_real(smooth_videos(2))  # the lazy load checks the file too
    with pytest.raises(MissingWeightsError, match=r"'is'.*pt_inception"):
        FrameIS(device="cpu").update_fake(smooth_videos(2))


def test_wrong_file_is_refused(tmp_path):
    path = tmp_path / "not_inception.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not the FID Inception"):
        FrameIS(weights=path, device="cpu").update_fake(smooth_videos(1))


def test_float_videos_rejected(inception_weights):
    metric = FrameFID(weights=inception_weights, feature=64, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        metric.update_real(smooth_videos(2).float() / 127.5 - 1)
    with pytest.raises(ValueError, match="uint8"):
        FrameIS(weights=inception_weights, device="cpu").update_fake(smooth_videos(2).float())


def test_config_validation():
    with pytest.raises(ValueError, match="feature"):
        FrameFID(feature=1000)
    with pytest.raises(ValueError, match="splits"):
        FrameIS(splits=0)
    assert FrameFID().num_real_wanted == 2048 and FrameFID().num_fake_wanted == 2048
    assert FrameIS.needs_real is False and FrameFID.needs_real is True
