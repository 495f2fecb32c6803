"""Rotary position embedding (RoPE, Su et al. 2021) for attention over one axis (Latte's temporal RoPE).

The "rotate half" convention (GPT-NeoX / most vision code): the head dimension ``d`` (even) is split into
two halves ``x1, x2`` and channel pair ``(x1_i, x2_i)`` at position ``m`` is rotated by the angle
``m * base^(-2i/d)``. The dot product of a rotated query at position ``m`` and a rotated key at position
``n`` depends on the positions only through ``m - n``, so attention scores see relative offsets only.
RoPE has no parameters and adds nothing to the token features (unlike the additive sin-cos table).
:func:`axial_rope_angles` gives the 2D axial variant for a grid of patches (half the pairs per axis).
"""

from __future__ import annotations

import torch


def rope_angles(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of RoPE for the given positions.

    Args:
        positions: ``(L,)`` positions (int or float; e.g. frame indices ``0 .. F-1``).
        head_dim: per-head feature size ``d``, even.
        base: the base of the geometric frequency ladder.
        dtype: dtype of the returned tables.

    Returns:
        ``(cos, sin)``, each ``(L, d)`` in ``dtype`` on ``positions``' device; computed in float64, so large
        position offsets lose no accuracy before the cast.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim
    )
    angles = positions.double().reshape(-1)[:, None] * inv_freq[None]  # (L, d/2)
    angles = torch.cat([angles, angles], dim=-1)  # (L, d): the same angle for x1_i and x2_i
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last axis."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x: (..., L, d)`` by the tables of :func:`rope_angles` (``(L, d)``, broadcast over the rest).

    Returns ``x * cos + rotate_half(x) * sin`` in ``x``'s dtype.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def axial_rope_angles(
    height: int,
    width: int,
    head_dim: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of 2D axial RoPE for an ``height x width`` token grid, for :func:`apply_rope`.

    In the "rotate half" layout the ``d/2`` channel pairs ``(x1_i, x2_i)`` are split in two: pairs
    ``0 .. d/4 - 1`` rotate by the token's row index, pairs ``d/4 .. d/2 - 1`` by its column index, each
    group with the 1D ladder of a ``d/2``-dimensional RoPE (``base^(-4j/d)``, ``j < d/4``). The score of a
    rotated query at ``(y1, x1)`` and a rotated key at ``(y2, x2)`` then depends on the positions only
    through ``(y1 - y2, x1 - x2)``.

    Args:
        height, width: grid size; tokens are numbered row-major (``index = row * width + col``).
        head_dim: per-head feature size ``d``, divisible by 4.
        base: the base of the geometric frequency ladder.
        dtype: dtype of the returned tables.
        device: device of the returned tables (default: the CPU).

    Returns:
        ``(cos, sin)``, each ``(height * width, d)`` in ``dtype``; computed in float64 before the cast.
    """
    if head_dim % 4:
        raise ValueError(f"2D axial RoPE needs a head dimension divisible by 4, got {head_dim}")
    rows = torch.arange(height, device=device).repeat_interleave(width)  # (L,)
    cols = torch.arange(width, device=device).repeat(height)  # (L,)
    quarter = head_dim // 4
    # each 1D table is (L, d/2) = [angles, angles] with d/4 distinct angles; keep one copy of each axis
    cos_r, sin_r = (t[:, :quarter] for t in rope_angles(rows, head_dim // 2, base, torch.float64))
    cos_c, sin_c = (t[:, :quarter] for t in rope_angles(cols, head_dim // 2, base, torch.float64))
    cos = torch.cat([cos_r, cos_c, cos_r, cos_c], dim=-1)  # pair i and its partner i + d/2 share an angle
    sin = torch.cat([sin_r, sin_c, sin_r, sin_c], dim=-1)
    return cos.to(dtype), sin.to(dtype)
