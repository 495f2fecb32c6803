"""Multi-head self-attention on ``(N, L, D)`` tokens via ``scaled_dot_product_attention``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (parameter names ``qkv`` / ``proj`` as timm/DiT).

    The attention runs over dim 1 of its ``(N, L, D)`` input: the caller decides what a sequence is (the
    patches of one frame, the frames of one spatial position, ...) by arranging the tokens.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over the sequence axis.

        Args:
            x: ``(N, L, D)`` tokens; each of the N sequences attends only within itself.
            attn_mask: optional, broadcastable to ``(N, heads, L, L)``; bool (True = may attend) or an
                additive float bias, with ``scaled_dot_product_attention``'s semantics.

        Returns:
            ``(N, L, D)``.
        """
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))
