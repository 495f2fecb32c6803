"""Relative frame positions for attention over time, and the image-video joint-training mask.

Each strategy is a small module with one method, ``attend(q, k, v, allowed)``: scaled dot-product attention
over the ``L`` frames of each sequence, with its way of telling frames apart. Every one of them depends on
the frames only through the offset ``j - i`` of key ``j`` from query ``i`` (nothing is indexed by the
absolute frame number), so a layer runs on any number of frames, 1 included, and a clip shifted in time
attends the same way.

==========  ===================================================================================================
kind        what it does (per temporal attention layer, ``d`` = head width, ``H`` heads)
==========  ===================================================================================================
shaw        Shaw, Uszkoreit & Vaswani (2018), VDM's choice: learned vectors ``a^K_r, a^V_r`` (``d`` each) for
            the clipped offset ``r = clip(j - i, -R, R)``, shared across heads; ``logit_ij = q_i . (k_j +
            a^K_r) / sqrt(d)`` and ``out_i = sum_j p_ij (v_j + a^V_r)``. ``2 (2R + 1) d`` parameters.
t5_bias     T5's bucketed relative bias: a learned scalar per (bucket of ``j - i``, head) added to the logits
            (``num_buckets`` buckets, half for keys before the query and half after; exact offsets up to a
            quarter of the buckets, logarithmic up to ``max_distance``, the last bucket beyond).
            ``num_buckets * H`` parameters.
rope        rotary embedding of queries and keys by the frame index (:mod:`vidgen.nn.rope`); no parameters.
none        no position: the layer is permutation-equivariant in the frames (diffusers' temporal
            transformer).
==========  ===================================================================================================

Masking: the allowed-matrix ``allowed[i, j]`` (True = query ``i`` may attend to key ``j``) is applied AFTER
the positional bias is added, by setting the disallowed logits to ``-inf``: a frame allowed to see only
itself then has exactly the weights ``(0, .., 1, .., 0)`` and the output ``v_i (+ a^V_0)``, bit for bit the
one-frame computation. (A finite large negative bias, or a bias added after masking, leaks.) Every row must
allow at least its own frame (the joint-training mask always does), so no row is all ``-inf``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.nn.rope import apply_rope, rope_angles

__all__ = [
    "TEMPORAL_POSITIONS",
    "RotaryPosition",
    "ShawPosition",
    "T5Bias",
    "TemporalPosition",
    "build_temporal_position",
    "joint_training_mask",
    "relative_offsets",
    "t5_buckets",
]

TEMPORAL_POSITIONS = ("shaw", "t5_bias", "rope", "none")


def relative_offsets(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(L, L)`` int64 matrix of ``j - i`` (row = query frame ``i``, column = key frame ``j``)."""
    positions = torch.arange(length, device=device)
    return positions[None, :] - positions[:, None]


def joint_training_mask(
    num_frames: int, clip_frames: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """VDM's image-video joint-training mask over ``num_frames = F + K`` frames, ``F = clip_frames``.

    Returns:
        ``(F + K, F + K)`` bool, ``allowed[i, j] = (i < F and j < F) or i == j``: the clip frames attend
        among themselves, each appended image only to itself.
    """
    if not 0 <= clip_frames <= num_frames:
        raise ValueError(f"clip_frames must lie in [0, {num_frames}], got {clip_frames}")
    clip = torch.arange(num_frames, device=device) < clip_frames
    return (clip[:, None] & clip[None, :]) | torch.eye(num_frames, dtype=torch.bool, device=device)


def t5_buckets(offsets: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bidirectional relative-position buckets of offsets ``j - i`` (any shape, int64).

    Keys at or before the query (``j - i <= 0``) use buckets ``[0, n/2)``, keys after it ``[n/2, n)``
    (``n = num_buckets``). Within a half, distances ``d < n/4`` get a bucket each; larger distances share
    buckets spaced logarithmically up to ``max_distance``; everything beyond is in the half's last bucket.
    """
    half = num_buckets // 2
    exact = half // 2
    distance = offsets.abs()
    scaled = torch.log(distance.clamp(min=1).double() / exact) / math.log(max_distance / exact)
    large = (exact + (scaled * (half - exact)).long()).clamp(max=half - 1)
    return (offsets > 0).long() * half + torch.where(distance < exact, distance, large)


class TemporalPosition(nn.Module):
    """No temporal position (``none``), and the interface of every strategy: :meth:`attend`."""

    kind = "none"

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention over frames.

        Args:
            q, k, v: ``(N, H, L, d)`` per-head queries, keys and values of ``N`` sequences of ``L`` frames.
            allowed: ``(L, L)`` bool (True = may attend; every row allows its own frame) or None (all).

        Returns:
            ``(N, H, L, d)``.
        """
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


class ShawPosition(TemporalPosition):
    """Shaw et al.'s relative position representations, shared across heads (see the module docstring).

    Args:
        head_dim: ``d``.
        max_distance: ``R``: offsets beyond ``+-R`` share the table's end rows.
    """

    kind = "shaw"

    def __init__(self, head_dim: int, max_distance: int = 32) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.key_table = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))  # a^K_r, row r + R
        self.value_table = nn.Parameter(torch.empty(2 * max_distance + 1, head_dim))  # a^V_r
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Both tables N(0, 0.02)."""
        nn.init.normal_(self.key_table, std=0.02)
        nn.init.normal_(self.value_table, std=0.02)

    def table_index(self, length: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``(L, L)`` rows of the tables used for (query ``i``, key ``j``): ``clip(j - i, -R, R) + R``."""
        offsets = relative_offsets(length, device)
        return offsets.clamp(-self.max_distance, self.max_distance) + self.max_distance

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :meth:`TemporalPosition.attend`; the weights are formed explicitly (they also weight ``a^V``)."""
        index = self.table_index(q.shape[2], q.device)
        a_k = self.key_table.to(q.dtype)[index]  # (L, L, d)
        a_v = self.value_table.to(q.dtype)[index]
        logits = torch.einsum("nhid,nhjd->nhij", q, k) + torch.einsum("nhid,ijd->nhij", q, a_k)
        logits = logits * q.shape[-1] ** -0.5
        if allowed is not None:  # after the positional term: a disallowed key gets weight exactly 0
            logits = logits.masked_fill(~allowed, float("-inf"))
        weights = logits.softmax(dim=-1)
        return torch.einsum("nhij,nhjd->nhid", weights, v) + torch.einsum("nhij,ijd->nhid", weights, a_v)


class T5Bias(TemporalPosition):
    """T5's bucketed relative bias, one scalar per (bucket, head) (see the module docstring).

    Args:
        num_heads: ``H``.
        num_buckets: buckets (even, >= 4), half each side.
        max_distance: the distance from which offsets share the half's last bucket.
    """

    kind = "t5_bias"

    def __init__(self, num_heads: int, num_buckets: int = 32, max_distance: int = 32) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.bias = nn.Embedding(num_buckets, num_heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The bias table N(0, 0.02)."""
        nn.init.normal_(self.bias.weight, std=0.02)

    def bucket_index(self, length: int, device: torch.device | str | None = None) -> torch.Tensor:
        """``(L, L)`` bucket of (query ``i``, key ``j``)."""
        return t5_buckets(relative_offsets(length, device), self.num_buckets, self.max_distance)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :meth:`TemporalPosition.attend`; the bias is added, then the mask."""
        bias = self.bias(self.bucket_index(q.shape[2], q.device)).permute(2, 0, 1).to(q.dtype)  # (H, L, L)
        if allowed is not None:
            bias = bias.masked_fill(~allowed, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


class RotaryPosition(TemporalPosition):
    """Rotary embedding of queries and keys by the frame index (:func:`~vidgen.nn.rope.apply_rope`).

    Args:
        head_dim: ``d``, even.
    """

    kind = "rope"

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
        self.head_dim = head_dim

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :meth:`TemporalPosition.attend`."""
        dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
        cos, sin = rope_angles(torch.arange(q.shape[2], device=q.device), self.head_dim, dtype=dtype)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)


def build_temporal_position(
    kind: str, head_dim: int, num_heads: int, max_distance: int = 32, num_buckets: int = 32
) -> TemporalPosition:
    """The strategy named ``kind`` (one of :data:`TEMPORAL_POSITIONS`) for one attention layer."""
    if kind == "shaw":
        return ShawPosition(head_dim, max_distance)
    if kind == "t5_bias":
        return T5Bias(num_heads, num_buckets, max_distance)
    if kind == "rope":
        return RotaryPosition(head_dim)
    if kind == "none":
        return TemporalPosition()
    raise ValueError(f"unknown temporal position {kind!r}; choose one of {', '.join(TEMPORAL_POSITIONS)}")
