"""Patch embeddings for latent videos."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class FramePatchEmbed(nn.Module):
    """Per-frame 2D patch embedding (Latte's "uniform frame patch embedding"; ViT/DiT on every frame).

    ``Conv2d(C, hidden, p, stride=p)`` named ``proj`` (DiT's ``x_embedder.proj``), applied to every frame.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, F, H, W)`` -> tokens ``(B, F, h*w, hidden)``, ``h = H/p``, ``w = W/p``, patches row-major."""
        b = x.shape[0]
        frames = rearrange(x, "b c f h w -> (b f) c h w")  # frames ride in the batch
        tokens = self.proj(frames)  # (B*F, hidden, h, w)
        return rearrange(tokens, "(b f) d h w -> b f (h w) d", b=b)
