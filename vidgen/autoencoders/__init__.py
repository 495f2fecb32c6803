"""Frozen frame-wise autoencoders: identity (pixel space) and Stable Diffusion's VAE."""

from __future__ import annotations

from vidgen.autoencoders.base import FrameAutoencoder
from vidgen.autoencoders.identity import IdentityAutoencoder
from vidgen.config.errors import ConfigError

AUTOENCODER_KINDS = ("identity", "sd_vae")


def build_autoencoder(
    kind: str,
    latent_channels: int,
    downsample: int = 1,
    scaling_factor: float = 1.0,
    path: str | None = None,
    subfolder: str | None = None,
    sample_posterior: bool = False,
    micro_batch: int = 0,
) -> FrameAutoencoder:
    """Build the autoencoder named by ``autoencoder.kind`` (the config node's keys are the arguments)."""
    if kind == "identity":
        if downsample != 1 or scaling_factor != 1.0:
            raise ConfigError(
                "autoencoder.downsample", "the identity autoencoder has downsample 1 and scale 1"
            )
        return IdentityAutoencoder(latent_channels)
    if kind == "sd_vae":
        from vidgen.autoencoders.sd_vae import StableDiffusionVAE

        if not path:
            raise ConfigError("autoencoder.path", "the SD VAE needs a local folder path")
        return StableDiffusionVAE(
            path,
            subfolder=subfolder,
            scaling_factor=scaling_factor,
            sample_posterior=sample_posterior,
            micro_batch=micro_batch,
            latent_channels=latent_channels,
            downsample=downsample,
        )
    raise ConfigError(
        "autoencoder.kind", f"unknown kind '{kind}'; choose one of {', '.join(AUTOENCODER_KINDS)}"
    )


__all__ = ["AUTOENCODER_KINDS", "FrameAutoencoder", "IdentityAutoencoder", "build_autoencoder"]
