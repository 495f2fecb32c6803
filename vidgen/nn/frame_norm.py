"""Frame-local GroupNorm for videos ``(B, C, F, H, W)``: the statistics of each group run over the channels of
the group and the ``H x W`` positions of ONE frame, never over frames.

``nn.GroupNorm`` on the 5-D tensor itself pools each group over ``(C/g, F, H, W)``, so every frame's output
depends on every other frame through the mean and variance. In a video U-Net that is a hidden temporal
layer: it breaks image-video joint training (an appended image would see the clip through the statistics)
and the factorisation into spatial and temporal layers. This norm is ``nn.GroupNorm`` applied to the frames
stacked in the batch, ``(B*F, C, H, W)``, with the same parameters (``weight``, ``bias``: ``2C``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["FrameGroupNorm"]


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm whose statistics are per (sample, frame, group).

    Args:
        num_groups: groups ``g``; must divide ``num_channels``.
        num_channels: ``C``.
        eps: added to the variance.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, F, H, W)`` -> the same shape, each frame normalised on its own."""
        frames = x.shape[2]
        out = super().forward(rearrange(x, "b c f h w -> (b f) c h w"))
        return rearrange(out, "(b f) c h w -> b c f h w", f=frames)
