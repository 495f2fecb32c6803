"""vidgen.metrics.fvd and vidgen.metrics.i3d: the FVD pipeline with stand-in networks (no real weights here).

The PyTorch detector is vidgen's I3D with random weights, saved as a state dict and loaded through the real
path; the TorchScript detector is a tiny scripted module with StyleGAN-V's call signature.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidgen.metrics.fvd import FVD, STYLEGAN_V_I3D_SHA256, STYLEGAN_V_I3D_SIZE, i3d_input
from vidgen.metrics.i3d import InceptionI3d, load_i3d, tf_same_padding
from vidgen.metrics.stats_cache import StatsCache
from vidgen.metrics.weights import WEIGHTS_ENV, MissingWeightsError

# the stand-in detector is TorchScript (deprecated in PyTorch, but the form StyleGAN-V's detector ships in)
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:FutureWarning")


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smooth_videos(n: int, frames: int = 12, height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    """uint8 ``(n, frames, height, width, 3)``: drifting colour gradients, a different phase per clip."""
    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(n, 1, 1, 1, 3, generator=generator) * 6.28
    t = torch.arange(frames).view(1, frames, 1, 1, 1) * 0.3
    y = torch.linspace(0, 3, height).view(1, 1, height, 1, 1)
    x = torch.linspace(0, 3, width).view(1, 1, 1, width, 1)
    values = 127.5 + 100 * torch.sin(x + y + t + phase)
    return values.round().clamp(0, 255).to(torch.uint8)


def noise_videos(n: int, frames: int = 12, height: int = 40, width: int = 48, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, frames, height, width, 3), generator=generator, dtype=torch.uint8)


# --------------------------------------------------------------------------------- PyTorch I3D detector


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, InceptionI3d]:
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    for module in model.modules():  # variance-preserving init, so features still depend on the input
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("weights") / "i3d_pretrained_400.pt"
    torch.save(model.state_dict(), path)
    return path, model


def test_i3d_state_dict_uses_the_piergiaj_layout() -> None:
    keys = InceptionI3d().state_dict().keys()
    for key in [
        "Conv3d_1a_7x7.conv3d.weight",
        "Conv3d_1a_7x7.bn.running_var",
        "Conv3d_2c_3x3.bn.num_batches_tracked",
        "Mixed_3b.b0.conv3d.weight",
        "Mixed_3b.b1a.bn.bias",
        "Mixed_4f.b2b.conv3d.weight",
        "Mixed_5c.b3b.bn.running_mean",
        "logits.conv3d.weight",
        "logits.conv3d.bias",
    ]:
        assert key in keys
    assert len(keys) == 57 * 6 + 2  # 57 conv + BN units, plus the logits conv with bias
    state = InceptionI3d().state_dict()
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert state["Mixed_5c.b0.conv3d.weight"].shape == (384, 832, 1, 1, 1)
    assert tf_same_padding((16, 224, 224), (7, 7, 7), (2, 2, 2)) == [2, 3, 2, 3, 2, 3]
    assert tf_same_padding((5, 7, 7), (3, 3, 3), (2, 2, 2)) == [1, 1, 1, 1, 1, 1]


def test_i3d_input_maps_range_layout_and_size() -> None:
    videos = torch.zeros(2, 10, 20, 30, 3, dtype=torch.uint8)
    videos[0] = 255
    out = i3d_input(videos, resolution=32)
    assert out.shape == (2, 3, 10, 32, 32) and out.dtype == torch.float32
    assert torch.all(out[0] == 1.0) and torch.all(out[1] == -1.0)
    videos = smooth_videos(1, frames=10)
    out = i3d_input(videos, resolution=24)
    frames = videos[0].permute(0, 3, 1, 2).float() / 127.5 - 1
    expected = F.interpolate(frames, size=(24, 24), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(out[0].permute(1, 0, 2, 3), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        i3d_input(videos.float(), 24)


def test_fvd_pytorch_pipeline_end_to_end(i3d_weights: tuple[Path, InceptionI3d]) -> None:
    path, model = i3d_weights
    real = smooth_videos(6, frames=12)

    def make() -> FVD:
        return FVD(
            detector="pytorch",
            weights=str(path),
            num_real=6,
            num_fake=6,
            num_frames=10,
            resolution=32,
            batch_size=4,
        )

    fvd = make()
    fvd.update_real(real)
    fvd.update_fake(real)
    same = fvd.compute()["fvd"]

    # the features are those of the saved network on the first 10 frames, converted by i3d_input
    with torch.no_grad():
        expected = model.features(i3d_input(real[:, :10], 32)).double()
    np.testing.assert_allclose(fvd.real_state()["sum"], expected.sum(0).numpy(), rtol=1e-4, atol=1e-6)

    noisy = make()
    noisy.load_real_state(fvd.real_state())
    noisy.update_fake(noise_videos(6))
    different = noisy.compute()["fvd"]
    assert different > 0
    assert abs(same) < 1e-6 * different


def test_load_i3d_reports_missing_and_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save({"features.0.weight": torch.zeros(2), "logits.conv3d.bias": torch.zeros(400)}, path)
    with pytest.raises(MissingWeightsError) as info:
        load_i3d(path)
    message = str(info.value)
    assert "wrong.pt" in message and "Conv3d_1a_7x7.conv3d.weight" in message
    assert re.search(r"missing keys \d+ \(", message)
    assert "unexpected keys 1 (features.0.weight)" in message
    torch.save({"logits.conv3d.weight": torch.zeros(3)}, path)
    with pytest.raises(MissingWeightsError, match="missing keys"):
        load_i3d(path)


def test_load_i3d_accepts_old_and_wrapped_checkpoints(tmp_path: Path, i3d_weights) -> None:
    _, model = i3d_weights
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pt"
    torch.save(state, path)
    loaded = load_i3d(path)
    assert not loaded.training
    torch.testing.assert_close(
        loaded.state_dict()["Mixed_4d.b1b.conv3d.weight"], model.Mixed_4d.b1b.conv3d.weight
    )


# ------------------------------------------------------------------------------ TorchScript detector


class StandInDetector(torch.nn.Module):
    """StyleGAN-V's call signature; refuses anything but uint8 (N, 3, T, H, W) with all three flags on."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        if x.dtype != torch.uint8 or x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != self.frames:
            raise RuntimeError("stand-in detector: expected uint8 (N, 3, T, H, W)")
        if not (rescale and resize and return_features):
            raise RuntimeError("stand-in detector: expected rescale, resize and return_features")
        v = x.float() / 255.0 * 2.0 - 1.0
        v = F.interpolate(v, size=[x.shape[2], 8, 8], mode="trilinear", align_corners=False)
        per_frame = v.mean(dim=[3, 4])  # (N, 3, T)
        return torch.cat([per_frame.mean(dim=2), per_frame.std(dim=2), v.std(dim=[2, 3, 4])], dim=1)


@pytest.fixture
def standin_path(tmp_path: Path) -> Path:
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.save(torch.jit.script(StandInDetector(frames=10)), str(path))
    return path


def _torchscript_fvd(path: Path | str, **kwargs) -> FVD:
    options = {"num_real": 6, "num_fake": 6, "num_frames": 10, "batch_size": 4, **kwargs}
    return FVD(detector="torchscript", weights=str(path), **options)


def test_fvd_torchscript_detector_call(standin_path: Path) -> None:
    fvd = _torchscript_fvd(standin_path, verify_sha256=False)
    real = smooth_videos(6, frames=14, height=20, width=24)
    fvd.update_real(real)
    fvd.update_fake(real)
    same = fvd.compute()["fvd"]
    fvd.reset_fake()
    fvd.update_fake(noise_videos(6, frames=10, height=20, width=24))
    different = fvd.compute()["fvd"]
    assert different > 0.1 and abs(same) < 1e-6 * different


def test_fvd_refuses_a_torchscript_file_that_is_not_stylegan_v(standin_path: Path) -> None:
    fvd = _torchscript_fvd(standin_path)  # verify_sha256 defaults to True
    (file,) = fvd.required_files()
    assert file.sha256 == STYLEGAN_V_I3D_SHA256 and file.size == STYLEGAN_V_I3D_SIZE and file.metric == "fvd"
    for action in (file.check, lambda: fvd.update_real(smooth_videos(2))):
        with pytest.raises(MissingWeightsError) as info:
            action()
        assert str(standin_path) in str(info.value) and STYLEGAN_V_I3D_SHA256 in str(info.value)


def test_fvd_sha256_check_refuses_a_same_size_file(tmp_path: Path) -> None:
    path = tmp_path / "i3d_torchscript.pt"
    with open(path, "wb") as handle:
        handle.truncate(STYLEGAN_V_I3D_SIZE)  # right size, wrong contents
    with pytest.raises(MissingWeightsError) as info:
        _torchscript_fvd(path).required_files()[0].check()
    message = str(info.value)
    assert str(path) in message and f"expected {STYLEGAN_V_I3D_SHA256}" in message and "'fvd'" in message


def test_fvd_weights_are_found_under_the_weights_folder(
    standin_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(standin_path.parent))
    monkeypatch.chdir(tmp_path.parent)
    fvd = FVD(num_real=2, num_fake=2, num_frames=10, verify_sha256=False)  # default file name
    assert fvd.required_files()[0].check() == standin_path
    fvd.update_real(smooth_videos(3, frames=10))
    assert fvd.num_real_seen == 2  # capped at num_real


@pytest.mark.parametrize(
    "detector,name", [("torchscript", "i3d_torchscript.pt"), ("pytorch", "i3d_pretrained_400.pt")]
)
def test_missing_weights_name_the_file_and_metric(
    detector: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    fvd = FVD(detector=detector)  # constructing needs no file
    for action in (fvd.required_files()[0].check, lambda: fvd.update_fake(smooth_videos(2, frames=16))):
        with pytest.raises(MissingWeightsError) as info:
            action()
        assert name in str(info.value) and "'fvd'" in str(info.value)


# ------------------------------------------------------------------------------------ input checks


def test_fvd_rejects_bad_videos_before_loading_anything(tmp_path: Path) -> None:
    fvd = FVD(weights=str(tmp_path / "absent.pt"), num_frames=12)
    good = smooth_videos(2, frames=12)
    with pytest.raises(ValueError, match="uint8"):
        fvd.update_real(good.float())
    with pytest.raises(ValueError, match=r"\(N, F, H, W, 3\)"):
        fvd.update_real(good.permute(0, 1, 4, 2, 3))
    with pytest.raises(ValueError, match="at least 10 frames"):
        fvd.update_fake(good[:, :9])
    with pytest.raises(ValueError, match="num_frames=12"):
        fvd.update_fake(good[:, :11])


def test_fvd_constructor_checks() -> None:
    with pytest.raises(ValueError, match="detector"):
        FVD(detector="tensorflow")
    with pytest.raises(ValueError, match="at least 10"):
        FVD(num_frames=8)
    with pytest.raises(ValueError, match="resizes frames to 224"):
        FVD(detector="torchscript", resolution=128)
    assert FVD(detector="pytorch", resolution=128).resolution == 128


def test_fvd_needs_two_clips_per_side(standin_path: Path) -> None:
    fvd = _torchscript_fvd(standin_path, verify_sha256=False)
    with pytest.raises(ValueError, match="at least 2 real and 2 generated"):
        fvd.compute()
    fvd.update_real(smooth_videos(3, frames=10))
    fvd.update_fake(smooth_videos(1, frames=10))
    with pytest.raises(ValueError, match="got 3 real and 1 generated"):
        fvd.compute()


# ------------------------------------------------------------------------------------------ caching


def test_fvd_real_statistics_cache_round_trip(standin_path: Path, tmp_path: Path) -> None:
    real = smooth_videos(6, frames=10, height=16, width=16)
    first = _torchscript_fvd(standin_path, verify_sha256=False)
    first.update_real(real)
    first.update_fake(noise_videos(6, frames=10, height=16, width=16))
    expected = first.compute()["fvd"]

    cache = StatsCache(tmp_path / "cache")
    dataset = {"name": "synthetic", "frames": 10, "stride": 1, "resolution": 16, "num_clips": 6}
    key = first.real_cache_key()
    assert key["weights"]["file"] == "i3d_torchscript.pt" and len(key["weights"]["sha256"]) == 64
    path = cache.path_for(dataset, key)
    cache.save(path, first.real_state())

    second = _torchscript_fvd(standin_path, verify_sha256=False)
    assert second.real_cache_key() == key and cache.path_for(dataset, second.real_cache_key()) == path
    second.load_real_state(cache.load(path))
    second.update_fake(noise_videos(6, frames=10, height=16, width=16))
    assert second.compute()["fvd"] == pytest.approx(expected, rel=1e-12)

    other = _torchscript_fvd(standin_path, verify_sha256=False, num_frames=12).real_cache_key()
    assert other != key and cache.path_for(dataset, other) != path
    assert (
        FVD(detector="pytorch", weights=str(standin_path), num_frames=10, num_real=6).real_cache_key() != key
    )
