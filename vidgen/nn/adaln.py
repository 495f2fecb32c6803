"""Adaptive LayerNorm with zero init (adaLN-Zero, DiT; Latte's S-AdaLN)."""

from __future__ import annotations

import torch
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift``; ``shift`` and ``scale`` must broadcast against ``x`` (e.g.
    ``x: (B, G, L, D)`` with ``shift, scale: (B, 1, 1, D)``, as :class:`AdaLNModulation` returns them)."""
    return x * (1 + scale) + shift


class AdaLNModulation(nn.Sequential):
    """``SiLU -> Linear(hidden, k * hidden)``, zero-initialised, split into ``k`` modulation vectors.

    It subclasses ``nn.Sequential`` so the linear is named ``.1`` (DiT's ``adaLN_modulation.1``).
    The modulation is computed once per sample from ``c: (B, hidden)`` and returned with singleton token
    axes, so it broadcasts over however many token axes the caller has (frames, positions, ...) without
    materialising ``c`` per token.
    """

    def __init__(self, hidden_size: int, k: int) -> None:
        super().__init__(nn.SiLU(), nn.Linear(hidden_size, k * hidden_size))
        self.k = k
        self.zero_()

    def zero_(self) -> None:
        """Zero the linear: every shift/scale/gate starts at 0 (identity block, zero output)."""
        nn.init.zeros_(self[1].weight)
        nn.init.zeros_(self[1].bias)

    def forward(self, c: torch.Tensor, token_dims: int = 1) -> tuple[torch.Tensor, ...]:
        """``c: (B, hidden)`` -> ``k`` tensors of shape ``(B, 1 x token_dims, hidden)``.

        ``token_dims`` is the number of token axes between batch and features in the tensor being
        modulated, e.g. 2 for ``(B, G, L, D)``.
        """
        out = super().forward(c)  # (B, k * hidden)
        out = out.view(out.shape[0], *([1] * token_dims), out.shape[-1])
        return out.chunk(self.k, dim=-1)
