"""Space-only convolutional layers of a factorised video U-Net on ``(B, C, F, H, W)`` (VDM's 3D U-Net).

Every convolution has kernel ``1 x 3 x 3`` (axis 0 = frames): a 2D convolution applied to each frame,
the weights shared by all frames, so no layer here mixes frames. Resampling changes ``H`` and ``W`` only.

- :func:`spatial_conv`: ``Conv3d(k=(1, 3, 3), padding=(0, 1, 1))``.
- :class:`ResBlock3D`: ADM / BigGAN's residual block, ``GN -> SiLU -> conv``, ``+ Linear(SiLU(e))``
  broadcast over ``(H, W)`` (and over ``F`` for one embedding per sample), ``GN -> SiLU -> Dropout -> conv``
  (zero-initialised, ADM: the block starts as its skip), ``1x1x1`` skip convolution when the width changes.
  Both GroupNorms are frame-local. Parameters ``cin -> cout`` with embedding width ``E``: norms
  ``2cin + 2cout``, convs ``9 cin cout + cout + 9 cout^2 + cout``, embedding ``E cout + cout``, skip
  ``cin cout + cout`` when ``cin != cout``.
- :class:`SpatialDownsample`: ``Conv3d(k=(1, 3, 3), stride=(1, 2, 2))``, ``9C^2 + C``.
- :class:`SpatialUpsample`: nearest-neighbour ``x2`` on ``H, W``, then :func:`spatial_conv`, ``9C^2 + C``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.nn.frame_norm import FrameGroupNorm

__all__ = ["ResBlock3D", "SpatialDownsample", "SpatialUpsample", "spatial_conv"]


def spatial_conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv3d:
    """A per-frame ``3 x 3`` convolution as ``Conv3d(k=(1, 3, 3))`` (``stride`` on ``H, W`` only)."""
    return nn.Conv3d(
        in_channels, out_channels, kernel_size=(1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1)
    )


class ResBlock3D(nn.Module):
    """ADM's residual block with the conditioning embedding added (see the module docstring).

    Args:
        in_channels: ``cin``.
        out_channels: ``cout``.
        emb_dim: width ``E`` of the conditioning embedding.
        num_groups: groups of both frame-local GroupNorms.
        dropout: dropout probability before the second convolution.
    """

    def __init__(
        self, in_channels: int, out_channels: int, emb_dim: int, num_groups: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.in_norm = FrameGroupNorm(num_groups, in_channels)
        self.in_conv = spatial_conv(in_channels, out_channels)
        self.emb_proj = nn.Linear(emb_dim, out_channels)
        self.out_norm = FrameGroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = spatial_conv(out_channels, out_channels)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, cin, F, H, W)``.
            emb: ``(B, 1, E)`` (one embedding per sample) or ``(B, F, E)`` (one per frame: image-video joint
                training, where every appended image has its own condition).

        Returns:
            ``(B, cout, F, H, W)``.
        """
        h = self.in_conv(F.silu(self.in_norm(x)))
        h = h + rearrange(self.emb_proj(F.silu(emb)), "b f c -> b c f 1 1").to(h.dtype)
        h = self.out_conv(self.dropout(F.silu(self.out_norm(h))))
        return self.skip(x) + h


class SpatialDownsample(nn.Module):
    """Halve ``H`` and ``W`` (rounding up) with a strided per-frame ``3 x 3`` convolution; ``F`` unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = spatial_conv(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> ``(B, C, F, ceil(H/2), ceil(W/2))``."""
        return self.conv(x)


class SpatialUpsample(nn.Module):
    """Double ``H`` and ``W`` (nearest neighbour), then a per-frame ``3 x 3`` convolution; ``F`` unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = spatial_conv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> ``(B, C, F, 2H, 2W)``."""
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))
