"""Gathering per-timestep coefficients from a float64 table, broadcast against a batch."""

from __future__ import annotations

import torch


def gather(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Pick ``table[t]`` per batch element, shaped to broadcast against ``like``.

    Args:
        table: ``(T,)`` coefficient table (float64).
        t: ``(B,)`` integer indices into ``table``.
        like: ``(B, ...)`` tensor whose dtype, device and rank the result follows.

    Returns:
        ``(B, 1, ..., 1)`` (rank of ``like``) in ``like``'s dtype and device.
    """
    values = table.to(device=t.device)[t]
    return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
