"""Pixel-space diffusion: the identity autoencoder."""

from __future__ import annotations

import torch

from vidgen.autoencoders.base import FrameAutoencoder


class IdentityAutoencoder(FrameAutoencoder):
    """Latents are the pixels (``latent_channels = C``, ``downsample = 1``, ``scaling_factor = 1``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.latent_channels = channels
        self.downsample = 1
        self.scaling_factor = 1.0

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> the same tensor."""
        return video

    def posterior(self, video: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``(B, C, F, H, W)`` -> ``(video, None)``: the latents are the pixels, nothing is drawn."""
        return video, None

    def latents_from_posterior(
        self, mean: torch.Tensor, std: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The cached pixels ``(B, C, F, H, W)`` as they are."""
        return mean

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> the same tensor."""
        return latents
