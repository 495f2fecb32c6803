"""The release's pixel loss for CMD's stage 1 (``cmd.loss=l1_lpips``): LPIPS-VGG with the backbone read from a
local torchvision-format VGG16 file (written here with random weights: nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.vgg import cfgs, make_layers

from tests.conftest import TINY_DATA, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module
from vidgen.lit.seeding import step_generator
from vidgen.metrics.lpips import build_lpips_vgg


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torchvision's VGG16 ``features.*`` keys and shapes (random weights), as in vgg16-397923af.pth."""
    torch.manual_seed(0)
    features = make_layers(cfgs["D"], batch_norm=False)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_lpips_reads_the_backbone_from_the_file_and_is_a_distance(vgg_file: Path) -> None:
    lpips = build_lpips_vgg(vgg_file)
    state = torch.load(vgg_file, weights_only=True)
    torch.testing.assert_close(lpips.net.slice1[0].weight, state["features.0.weight"])
    torch.testing.assert_close(getattr(lpips.net.slice5, "28").bias, state["features.28.bias"])
    assert not any(p.requires_grad for p in lpips.parameters())
    x, y = torch.rand(2, 2, 3, 16, 16) * 2 - 1
    same = lpips(x, x).flatten()
    assert same.abs().max() < 1e-6
    apart = lpips(x, y).flatten()
    assert (apart > 1e-4).all()
    torch.testing.assert_close(apart, lpips(y, x).flatten())


def test_lpips_names_the_key_for_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cmd\.lpips_vgg_weights: .*does not exist"):
        build_lpips_vgg(tmp_path / "missing.pth")
    torch.save({"classifier.0.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match=r"^cmd\.lpips_vgg_weights: .*no VGG16 'features"):
        build_lpips_vgg(tmp_path / "other.pth")


def test_stage1_l1_lpips_loss_is_the_releases_formula(vgg_file: Path, tmp_path: Path) -> None:
    """4 mean|x - x̂| over the clip + 4 LPIPS on one frame per clip, the frame drawn from the step's stream."""
    overrides = ["model=cmd_ae", "cmd.loss=l1_lpips", f"cmd.lpips_vgg_weights={vgg_file}", *TINY_DATA]
    cfg = compose_config(overrides, run_dir=tmp_path)
    validate_config(cfg)
    module = build_module(cfg)
    x = torch.rand(3, 3, 4, 16, 16) * 2 - 1
    recon = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    loss = module._loss(x, recon, step_generator(0, 5))
    frames = torch.randint(4, (3,), generator=step_generator(0, 5))
    lpips = module.lpips(x[torch.arange(3), :, frames], recon[torch.arange(3), :, frames]).flatten()
    expected = 4 * (x - recon).abs().flatten(1).mean(1) + 4 * lpips
    torch.testing.assert_close(loss, expected)
    assert "lpips.lin0.model.1.weight" not in {k for k in module.state_dict() if not k.startswith("lpips.")}
    assert "lpips." in module._frozen_prefixes()  # the VGG file is the user's: checkpoints do not copy it


def test_l1_lpips_config_errors_name_the_key(tmp_path: Path) -> None:
    base = ["model=cmd_ae", "cmd.loss=l1_lpips", *TINY_DATA]
    with pytest.raises(ConfigError, match=r"^cmd\.lpips_vgg_weights: "):
        validate_config(compose_config(base, run_dir=tmp_path))
    (tmp_path / "vgg.pth").touch()
    latent = [*base, f"cmd.lpips_vgg_weights={tmp_path / 'vgg.pth'}", "autoencoder=sd_vae"]
    with pytest.raises(ConfigError, match=r"^cmd\.loss: l1_lpips is the release's pixel-space loss"):
        validate_config(compose_config(latent, run_dir=tmp_path))
