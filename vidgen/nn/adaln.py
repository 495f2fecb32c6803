"""Adaptive LayerNorm with zero init (adaLN-Zero, DiT; Latte's S-AdaLN)."""

from __future__ import annotations

import torch
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift``; ``shift`` and ``scale`` must broadcast against ``x`` (e.g.
    ``x: (B, G, L, D)`` with ``shift, scale: (B, 1, 1, D)``, as :class:`AdaLNModulation` returns them)."""
    return torch.addcmul(shift, x, 1 + scale)  # one pass over x (x * (1 + scale) + shift takes two)


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

    def forward(
        self, c: torch.Tensor, token_dims: int = 1, frame_axis: int | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``c: (B, hidden)`` -> ``k`` tensors of shape ``(B, 1 x token_dims, hidden)``.

        ``token_dims`` is the number of token axes between batch and features in the tensor being
        modulated, e.g. 2 for ``(B, G, L, D)``.

        Per-frame conditioning (image-video joint training, where appended images have their own
        condition): ``c: (B, F, hidden)`` -> ``k`` tensors with the ``F`` frames at axis ``frame_axis`` of
        the modulated tensor and singleton token axes elsewhere (e.g. ``(B, F, 1, D)`` for ``(B, F, S, D)``
        tokens with ``frame_axis=1``, ``(B, 1, F, D)`` for ``(B, S, F, D)`` with ``frame_axis=2``).
        """
        out = super().forward(c)  # (B, k * hidden) or (B, F, k * hidden)
        if c.dim() == 2:
            out = out.view(out.shape[0], *([1] * token_dims), out.shape[-1])
        else:
            if c.dim() != 3 or frame_axis is None or not 1 <= frame_axis <= token_dims:
                raise ValueError(
                    f"per-frame conditioning needs c of shape (B, F, hidden) and a frame_axis in "
                    f"[1, {token_dims}], got c {tuple(c.shape)}, frame_axis {frame_axis}"
                )
            shape = [out.shape[0], *([1] * token_dims), out.shape[-1]]
            shape[frame_axis] = out.shape[1]
            out = out.view(shape)
        return out.chunk(self.k, dim=-1)
