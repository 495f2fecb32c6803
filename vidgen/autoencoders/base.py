"""The frozen, frame-wise autoencoder interface shared by pixel and latent diffusion."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrameAutoencoder(nn.Module):
    """A frozen map between videos ``(B, C, F, H, W)`` in ``[-1, 1]`` and latents ``(B, c, F, H/d, W/d)``.

    Latents returned by :meth:`encode` are already multiplied by the scaling factor, so the diffusion model
    sees roughly unit-variance inputs; :meth:`decode` divides it back out.
    """

    latent_channels: int
    downsample: int
    scaling_factor: float

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, C, F, H, W)`` pixels in [-1, 1] -> ``(B, c, F, H/d, W/d)`` scaled latents."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, c, F, h, w)`` scaled latents -> ``(B, C, F, h*d, w*d)`` pixels in [-1, 1]."""
        raise NotImplementedError

    #: whether :meth:`posterior` gives a standard deviation (a VAE) or the latents alone (deterministic)
    has_posterior_std: bool = False

    def posterior(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, C, F, H, W)`` pixels -> the unscaled posterior ``(mean, std)``, each ``(B, c, F, h, w)``
        (``std`` None for a deterministic autoencoder). What a precomputed cache stores
        (:mod:`vidgen.data.latent_cache`); :meth:`latents_from_posterior` turns it into :meth:`encode`'s
        output."""
        raise NotImplementedError

    def latents_from_posterior(
        self, mean: torch.Tensor, std: torch.Tensor | None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The scaled latents ``(B, c, F, h, w)`` :meth:`encode` gives for the posterior ``(mean, std)`` of
        :meth:`posterior`, drawing the same random numbers from ``generator`` as :meth:`encode` does."""
        raise NotImplementedError

    def latent_shape(self, video_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of a video -> ``(c, F, H/d, W/d)`` of its latent."""
        _, frames, height, width = video_shape
        return (self.latent_channels, frames, height // self.downsample, width // self.downsample)

    def train(self, mode: bool = True) -> FrameAutoencoder:
        # Frozen: stays in eval mode whatever the surrounding module does.
        return super().train(False)


def batch_latents(
    autoencoder: FrameAutoencoder, batch: dict[str, Any], generator: torch.Generator | None
) -> torch.Tensor:
    """The scaled latents ``(B, c, F, h, w)`` of a training batch: from its cached posterior
    (``latent_mean`` / ``latent_std`` ``(B, c, F, h, w)``, a ``data.cache`` batch) or by encoding its
    ``video`` ``(B, C, F, H, W)``; either way the same random draws from ``generator``."""
    if "latent_mean" in batch:
        return autoencoder.latents_from_posterior(batch["latent_mean"], batch.get("latent_std"), generator)
    return autoencoder.encode(batch["video"], generator=generator)


def batch_size_of(batch: dict[str, Any]) -> int:
    """Clips in a batch of pixels (``video``) or of cached latents (``latent_mean``)."""
    return int(batch["video" if "video" in batch else "latent_mean"].shape[0])
