"""Factorised space-time self-attention on video feature maps ``(B, C, F, H, W)`` (VDM's 3D U-Net).

Two residual, pre-norm layers with a zero-initialised output projection (ADM's attention block), so a
fresh layer is the identity:

- :class:`SpatialAttention`: one sequence per (sample, frame), over its ``H*W`` positions. The pre-norm is
  frame-local GroupNorm (:class:`~vidgen.nn.frame_norm.FrameGroupNorm`); no positional encoding (ADM has
  none). Frames never meet.
- :class:`TemporalSelfAttention`: one sequence per (sample, position), over the ``F`` frames. The pre-norm is
  a per-token LayerNorm over the channels (a GroupNorm over ``(C, F)`` would pool statistics over the
  frames, and one over ``(C, F, H, W)`` over the positions too); the frames are told apart by a relative
  position strategy (:mod:`vidgen.nn.temporal_position`), and the image-video joint-training mask
  restricts which frames meet. Positions never meet.

Parameters per layer of width ``C``: norm ``2C``, ``qkv`` ``3C^2 + 3C``, output ``C^2 + C`` (``4C^2 + 6C``),
plus the temporal position's (Shaw ``2 (2R + 1) d``, T5 ``num_buckets * H``, RoPE and none 0).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vidgen.nn.attention import Attention
from vidgen.nn.frame_norm import FrameGroupNorm
from vidgen.nn.temporal_position import TemporalPosition

__all__ = ["SpatialAttention", "TemporalSelfAttention"]


class SpatialAttention(nn.Module):
    """Self-attention over the positions of each frame: ``x + proj(attn(GN_frame(x)))``.

    Args:
        channels: ``C``.
        num_heads: heads (``C`` divisible by it).
        num_groups: groups of the frame-local GroupNorm.
    """

    def __init__(self, channels: int, num_heads: int, num_groups: int) -> None:
        super().__init__()
        self.norm = FrameGroupNorm(num_groups, channels)
        self.attn = Attention(channels, num_heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, F, H, W)`` -> the same shape."""
        b, _, f, h, w = x.shape
        tokens = rearrange(self.norm(x), "b c f h w -> (b f) (h w) c")
        out = rearrange(self.attn(tokens), "(b f) (h w) c -> b c f h w", b=b, f=f, h=h, w=w)
        return x + out


class TemporalSelfAttention(nn.Module):
    """Self-attention over the frames at each position: ``x + proj(attn_pos(LN_token(x)))``.

    Args:
        channels: ``C``.
        num_heads: heads (``C`` divisible by it).
        position: the relative position strategy (owns its parameters, e.g. Shaw's tables).
        eps: LayerNorm epsilon.
    """

    def __init__(self, channels: int, num_heads: int, position: TemporalPosition, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"{channels} channels are not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.position = position
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over time.

        Args:
            x: ``(B, C, F, H, W)``.
            allowed: ``(F, F)`` bool, which frames each frame may attend to (the joint-training mask,
                :func:`~vidgen.nn.temporal_position.joint_training_mask`), or None (all).

        Returns:
            ``(B, C, F, H, W)``.
        """
        b, _, _, h, w = x.shape
        tokens = rearrange(x, "b c f h w -> (b h w) f c")
        q, k, v = rearrange(
            self.qkv(self.norm(tokens)),
            "n f (three heads d) -> three n heads f d",
            three=3,
            heads=self.num_heads,
        )
        out = rearrange(self.position.attend(q, k, v, allowed), "n heads f d -> n f (heads d)")
        return x + rearrange(self.proj(out), "(b h w) f c -> b c f h w", b=b, h=h, w=w)
