"""Multi-head attention via ``scaled_dot_product_attention``: self-attention on token sequences or on
space-time token grids (heads optionally split between space and time), and cross-attention to text."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.nn.rope import apply_rope
from vidgen.nn.spacetime import Axis, TokenGrid


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (parameter names ``qkv`` / ``proj`` as timm/DiT).

    :meth:`forward` attends over dim 1 of an ``(N, L, D)`` input: the caller decides what a sequence is.
    :meth:`forward_grid` attends within a space-time :class:`~vidgen.nn.spacetime.TokenGrid`; its heads may
    be split evenly between axes (Latte variant 4: half the heads over space, half over time). The output
    projection acts on the concatenated heads, so with two head groups it equals the sum of the two groups'
    own projections, ``W [z_s; z_t] + b = W_s z_s + W_t z_t + b`` (the paper's "add z_t' to z_s").
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend over the sequence axis.

        Args:
            x: ``(N, L, D)`` tokens; each of the N sequences attends only within itself.
            attn_mask: optional, broadcastable to ``(N, heads, L, L)``; bool (True = may attend) or an
                additive float bias, with ``scaled_dot_product_attention``'s semantics.
            rope: optional ``(cos, sin)`` tables ``(L, head_dim)`` (:func:`~vidgen.nn.rope.rope_angles`)
                rotating queries and keys.

        Returns:
            ``(N, L, D)``.
        """
        q, k, v = rearrange(self.qkv(x), "n l (three h d) -> three n h l d", three=3, h=self.num_heads)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(rearrange(out, "n h l d -> n l (h d)"))

    def forward_grid(
        self, x: torch.Tensor, grid: TokenGrid, axes: Sequence[Axis] = (Axis.SPACE,)
    ) -> torch.Tensor:
        """Attend within a space-time grid.

        Args:
            x: ``(B, X, Y, D)`` tokens arranged as ``grid`` says.
            grid: where time is, clip frames, RoPE (see :class:`~vidgen.nn.spacetime.TokenGrid`).
            axes: one axis per head group; the heads are split evenly and group ``g`` (heads
                ``g*H/n .. (g+1)*H/n - 1``) attends along ``axes[g]``.

        Returns:
            ``(B, X, Y, D)``.
        """
        if self.num_heads % len(axes):
            raise ValueError(f"{self.num_heads} heads cannot be split evenly over {len(axes)} axes")
        q, k, v = rearrange(self.qkv(x), "b x y (three h d) -> three b x y h d", three=3, h=self.num_heads)
        per = self.num_heads // len(axes)
        heads = [
            grid.attend(*(t[..., g * per : (g + 1) * per, :] for t in (q, k, v)), axis)
            for g, axis in enumerate(axes)
        ]
        out = heads[0] if len(heads) == 1 else torch.cat(heads, dim=-2)
        return self.proj(rearrange(out, "b x y h d -> b x y (h d)"))


class CrossAttention(nn.Module):
    """Multi-head cross-attention from tokens to a context (text states), PixArt-alpha style.

    Parameter names follow PixArt's ``MultiHeadCrossAttention``: ``q_linear`` (D -> D), ``kv_linear``
    (context_dim -> 2D; the text states are projected here, per block), ``proj`` (D -> D). The output
    projection is zero-initialised by the model (PixArt's ``initialize_weights``), so a fresh text model
    starts as the unconditional one and the captions come in as training opens the gate.
    """

    def __init__(self, dim: int, context_dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.q_linear = nn.Linear(dim, dim)
        self.kv_linear = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every token attends to its sample's context, independently of the other tokens.

        Args:
            x: ``(B, N, D)`` queries (all tokens of a sample; their order does not matter).
            context: ``(B, L, C)`` keys/values source.
            context_mask: ``(B, L)`` bool, True = real token; a sample with no real token gets a zero
                output (it attends to nothing).

        Returns:
            ``(B, N, D)``.
        """
        q = rearrange(self.q_linear(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.kv_linear(context), "b l (two h d) -> two b h l d", two=2, h=self.num_heads)
        mask, empty = None, None
        if context_mask is not None:
            context_mask = context_mask.to(torch.bool)
            empty = ~context_mask.any(dim=-1)  # (B,)
            mask = (context_mask | empty[:, None])[:, None, None, :]  # (B, 1, 1, L)
        out = self.proj(
            rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b h n d -> b n (h d)")
        )
        return out if empty is None else out.masked_fill(empty[:, None, None], 0.0)
