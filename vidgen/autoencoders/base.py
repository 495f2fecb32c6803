"""The frozen, frame-wise autoencoder interface shared by pixel and latent diffusion."""

from __future__ import annotations

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

    def latent_shape(self, video_shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of a video -> ``(c, F, H/d, W/d)`` of its latent."""
        _, frames, height, width = video_shape
        return (self.latent_channels, frames, height // self.downsample, width // self.downsample)

    def train(self, mode: bool = True) -> FrameAutoencoder:
        # Frozen: stays in eval mode whatever the surrounding module does.
        return super().train(False)
