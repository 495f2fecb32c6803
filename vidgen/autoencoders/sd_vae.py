"""Stable Diffusion's VAE (diffusers ``AutoencoderKL``) applied frame by frame, frozen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from safetensors.torch import load_file as safetensors_load

from vidgen.autoencoders.base import FrameAutoencoder
from vidgen.config.errors import ConfigError

_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _missing(path: Path, what: str) -> ConfigError:
    return ConfigError(
        "autoencoder.path",
        f"{what} '{path}' not found. autoencoder.path must name a local Stable Diffusion VAE: a diffusers folder "
        "(config.json + diffusion_pytorch_model.safetensors, e.g. a copy of stabilityai/sd-vae-ft-ema), a Stable "
        "Diffusion folder with a vae/ sub-folder, or a .safetensors file in diffusers layout next to its "
        "config.json. Nothing is downloaded.",
    )


def load_autoencoder_kl(path: Path, subfolder: str | None = None) -> Any:
    """Load a diffusers ``AutoencoderKL`` from a local folder or file, failing with the missing file's name."""
    from diffusers import AutoencoderKL

    if not path.exists():
        raise _missing(path, "Stable Diffusion VAE")
    if path.is_file():
        config_dir = path.parent / subfolder if subfolder else path.parent
        if not (config_dir / "config.json").is_file():
            raise _missing(config_dir / "config.json", "the VAE's diffusers config")
        model = AutoencoderKL.from_config(AutoencoderKL.load_config(str(config_dir)))
        state = (
            safetensors_load(str(path))
            if path.suffix == ".safetensors"
            else torch.load(path, weights_only=True)
        )
        model.load_state_dict(state, strict=True)
        return model
    folder = path / subfolder if subfolder else path
    if not subfolder and not (folder / "config.json").exists() and (path / "vae" / "config.json").exists():
        folder = path / "vae"  # a whole Stable Diffusion pipeline folder
    if not (folder / "config.json").is_file():
        raise _missing(folder / "config.json", "the VAE's diffusers config")
    if not any((folder / name).is_file() for name in _WEIGHT_NAMES):
        raise _missing(folder / _WEIGHT_NAMES[0], "the VAE's weights")
    return AutoencoderKL.from_pretrained(str(folder), local_files_only=True)


class StableDiffusionVAE(FrameAutoencoder):
    """Frame-wise SD VAE: frames ride in the batch dimension; latents are scaled by ``scaling_factor``.

    Args:
        path: local diffusers folder of the VAE (or a Stable Diffusion folder holding ``vae/``), or a weights
            file in diffusers layout (``.safetensors`` / ``.bin``) next to its ``config.json``.
        subfolder: sub-folder of ``path`` holding the VAE, if any.
        scaling_factor: latent scale (0.18215 for SD 1.x).
        sample_posterior: draw ``z ~ q(z|x)`` (Latte) instead of taking the posterior mean.
        micro_batch: frames per VAE call (0 = all at once).
    """

    def __init__(
        self,
        path: str | Path,
        subfolder: str | None = None,
        scaling_factor: float = 0.18215,
        sample_posterior: bool = True,
        micro_batch: int = 32,
        latent_channels: int = 4,
        downsample: int = 8,
    ) -> None:
        super().__init__()
        self.vae = load_autoencoder_kl(Path(path), subfolder)
        self.vae.requires_grad_(False).eval()
        folder = Path(path)
        self.latent_channels = int(self.vae.config.latent_channels)
        self.downsample = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if self.latent_channels != latent_channels:
            raise ConfigError(
                "autoencoder.latent_channels",
                f"config says {latent_channels} but the VAE at '{folder}' has {self.latent_channels}",
            )
        if self.downsample != downsample:
            raise ConfigError(
                "autoencoder.downsample",
                f"config says {downsample} but the VAE at '{folder}' downsamples by {self.downsample}",
            )
        self.scaling_factor = float(scaling_factor)
        self.sample_posterior = sample_posterior
        self.micro_batch = int(micro_batch)

    def _chunks(self, frames: torch.Tensor) -> list[torch.Tensor]:
        size = self.micro_batch if self.micro_batch > 0 else frames.shape[0]
        return list(frames.split(size, dim=0))

    #: the VAE's posterior has a standard deviation (cached beside the mean, :mod:`vidgen.data.latent_cache`)
    has_posterior_std = True

    @torch.no_grad()
    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 3, F, H, W)`` in [-1, 1] -> ``(B, 4, F, H/8, W/8)`` scaled latents: the posterior's sample
        (``sample_posterior``, drawn from ``generator``) or its mean, times ``scaling_factor``."""
        mean, std = self.posterior(video)
        return self.latents_from_posterior(mean, std, generator)

    @torch.no_grad()
    def posterior(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, F, H, W)`` in [-1, 1] -> the unscaled posterior ``(mean, std)``, each
        ``(B, 4, F, H/8, W/8)`` in the VAE's dtype (diffusers' ``latent_dist.mean`` / ``.std``)."""
        batch = video.shape[0]
        frames = rearrange(video, "b c f h w -> (b f) c h w")
        means, stds = [], []
        for chunk in self._chunks(frames):
            dist = self.vae.encode(chunk.to(self.vae.dtype)).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        mean, std = torch.cat(means, dim=0), torch.cat(stds, dim=0)
        unflat = "(b f) c h w -> b c f h w"
        return rearrange(mean, unflat, b=batch), rearrange(std, unflat, b=batch)

    @torch.no_grad()
    def latents_from_posterior(
        self, mean: torch.Tensor, std: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Scaled latents ``(B, 4, F, h, w)`` from the posterior ``mean`` / ``std`` ``(B, 4, F, h, w)``: with
        ``sample_posterior``, ``mean + std * eps`` with ``eps`` drawn chunk by chunk (``micro_batch`` frames)
        exactly as diffusers' ``latent_dist.sample(generator)`` draws it inside :meth:`encode`; else the mean."""
        from diffusers.utils.torch_utils import randn_tensor

        batch = mean.shape[0]
        means = self._chunks(rearrange(mean, "b c f h w -> (b f) c h w"))
        if self.sample_posterior:
            if std is None:
                raise ValueError("sampling the SD VAE's posterior needs its std (a cache without latent_std)")
            stds = self._chunks(rearrange(std, "b c f h w -> (b f) c h w"))
            means = [
                m + s * randn_tensor(m.shape, generator=generator, device=m.device, dtype=m.dtype)
                for m, s in zip(means, stds, strict=True)
            ]
        z = torch.cat(means, dim=0).float() * self.scaling_factor
        return rearrange(z, "(b f) c h w -> b c f h w", b=batch)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, 4, F, h, w)`` scaled latents -> ``(B, 3, F, 8h, 8w)`` pixels in [-1, 1]."""
        batch = latents.shape[0]
        frames = rearrange(latents, "b c f h w -> (b f) c h w") / self.scaling_factor
        video = torch.cat([self.vae.decode(c.to(self.vae.dtype)).sample for c in self._chunks(frames)], dim=0)
        return rearrange(video.float().clamp(-1, 1), "(b f) c h w -> b c f h w", b=batch)
