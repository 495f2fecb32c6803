"""Autoencoders: identity, and the SD VAE loaded from tiny diffusers folders / files written by the test."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from vidgen.autoencoders import build_autoencoder
from vidgen.config.errors import ConfigError


def _tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=16,
    ).eval()


def test_identity_round_trip() -> None:
    ae = build_autoencoder("identity", latent_channels=3)
    video = torch.rand(2, 3, 4, 8, 8) * 2 - 1
    assert torch.equal(ae.decode(ae.encode(video)), video)
    assert ae.latent_shape((3, 4, 8, 8)) == (3, 4, 8, 8)


@pytest.mark.parametrize("layout", ["vae_folder", "pipeline_folder", "single_file"])
def test_sd_vae_loads_from_disk_and_is_framewise(layout: str, tmp_path: Path) -> None:
    reference = _tiny_vae()
    if layout == "vae_folder":
        reference.save_pretrained(tmp_path / "vae")
        path = tmp_path / "vae"
    elif layout == "pipeline_folder":
        reference.save_pretrained(tmp_path / "sd" / "vae")
        path = tmp_path / "sd"
    else:
        reference.save_config(tmp_path / "file")
        save_file(reference.state_dict(), tmp_path / "file" / "vae.safetensors")
        path = tmp_path / "file" / "vae.safetensors"
    ae = build_autoencoder(
        "sd_vae", latent_channels=4, downsample=2, scaling_factor=0.5, path=str(path), micro_batch=3
    )
    assert not any(p.requires_grad for p in ae.parameters())
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    latents = ae.encode(video)
    assert latents.shape == (2, 4, 5, 8, 8) == (2, *ae.latent_shape((3, 5, 16, 16)))
    # frame-wise: frame 3 of clip 1 is the VAE's posterior mean of that frame, times the scaling factor
    with torch.no_grad():
        expected = reference.encode(video[1, :, 3][None]).latent_dist.mode()[0] * 0.5
    torch.testing.assert_close(latents[1, :, 3], expected, atol=1e-5, rtol=1e-4)
    decoded = ae.decode(latents)
    with torch.no_grad():
        expected_frame = reference.decode(latents[0, :, 2][None] / 0.5).sample[0].clamp(-1, 1)
    assert decoded.shape == video.shape
    torch.testing.assert_close(decoded[0, :, 2], expected_frame, atol=1e-5, rtol=1e-4)


def test_sd_vae_missing_files_name_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"autoencoder.path.*nowhere"):
        build_autoencoder("sd_vae", latent_channels=4, downsample=8, path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config.json"):
        build_autoencoder("sd_vae", latent_channels=4, downsample=8, path=str(tmp_path / "empty"))
    _tiny_vae().save_config(tmp_path / "noweights")
    with pytest.raises(ConfigError, match=r"diffusion_pytorch_model.safetensors"):
        build_autoencoder("sd_vae", latent_channels=4, downsample=2, path=str(tmp_path / "noweights"))
    _tiny_vae().save_pretrained(tmp_path / "ok")
    with pytest.raises(ConfigError, match=r"autoencoder.downsample"):
        build_autoencoder("sd_vae", latent_channels=4, downsample=8, path=str(tmp_path / "ok"))
