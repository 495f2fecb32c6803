"""Embeddings: diffusion timesteps, class labels, and frozen sin-cos position tables.

The formulas follow DiT / MAE so that weights and tables line up with an ImageNet DiT checkpoint:
the timestep features are ``[cos, sin]``; the position tables are ``[sin, cos]`` and, in 2D, the first half
of the channels encodes the column (x) index and the second half the row (y) index.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps.

    Args:
        t: ``(B,)`` timesteps, int or float.
        dim: feature size.
        max_period: the longest period (controls the lowest frequency).

    Returns:
        ``(B, dim)`` float32: ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = max_period^(-i / (dim // 2))``,
        zero-padded by one column when ``dim`` is odd.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """Timesteps -> vectors: sinusoidal features (``frequency_size``) -> Linear -> SiLU -> Linear (DiT).

    Parameter names ``mlp.0`` / ``mlp.2`` match DiT's ``t_embedder``.
    """

    def __init__(self, hidden_size: int, frequency_size: int = 256) -> None:
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t: (B,)`` int or float -> ``(B, hidden_size)`` in the dtype of the MLP's weights."""
        freqs = timestep_embedding(t, self.frequency_size).to(self.mlp[0].weight.dtype)
        return self.mlp(freqs)


class LabelEmbedder(nn.Module):
    """Class labels -> vectors, a table of ``num_classes + 1`` rows; the last row is the null class.

    There is no label dropout here: the conditioner replaces labels by the null index ``num_classes``
    (for classifier-free guidance training and sampling) before the denoiser sees them.
    """

    def __init__(self, num_classes: int, hidden_size: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """``labels: (B,)`` int64 in ``[0, num_classes]`` -> ``(B, hidden_size)``."""
        return self.embedding_table(labels)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sin-cos table for 1D positions (MAE / Transformer).

    Args:
        dim: feature size, even.
        positions: ``(M,)`` positions (any float values).

    Returns:
        ``(M, dim)`` float32 ``[sin(p * w_i), cos(p * w_i)]`` with ``w_i = 10000^(-i / (dim / 2))``.
    """
    if dim % 2:
        raise ValueError(f"sin-cos position tables need an even feature size, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # (dim/2,)
    angles = positions.double().reshape(-1)[:, None] * omega[None]  # (M, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1).float()


def sincos_1d_table(dim: int, length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(length, dim)`` sin-cos table for positions ``0 .. length-1`` (Latte's temporal table)."""
    return sincos_1d(dim, torch.arange(length, dtype=torch.float64, device=device))


def sincos_2d_table(
    dim: int, height: int, width: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Sin-cos table for a ``height x width`` grid of patches, flattened row-major (as patch tokens are).

    Args:
        dim: feature size, divisible by 4.
        height, width: grid size in patches.

    Returns:
        ``(height * width, dim)``: channels ``[:dim/2]`` encode the column index, ``[dim/2:]`` the row
        index (DiT's / MAE's layout, so a DiT checkpoint's table is reproduced exactly for a square grid).
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos position tables need a feature size divisible by 4, got {dim}")
    rows = torch.arange(height, dtype=torch.float64, device=device)
    cols = torch.arange(width, dtype=torch.float64, device=device)
    row_idx, col_idx = torch.meshgrid(rows, cols, indexing="ij")  # each (height, width)
    emb_col = sincos_1d(dim // 2, rearrange(col_idx, "h w -> (h w)"))
    emb_row = sincos_1d(dim // 2, rearrange(row_idx, "h w -> (h w)"))
    return torch.cat([emb_col, emb_row], dim=-1)
