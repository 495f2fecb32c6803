"""DiT's final layer: adaLN-modulated LayerNorm and a linear decoder to patch pixels."""

from __future__ import annotations

import torch
from torch import nn

from vidgen.nn.adaln import AdaLNModulation, modulate


class FinalLayer(nn.Module):
    """``LayerNorm (no affine) -> modulate(shift, scale from c) -> Linear(hidden, p*p*C_out)``.

    The linear and the modulation start at zero, so a fresh model outputs zeros. The output features of a
    token are ordered ``(p1 p2 c)`` as in DiT's unpatchify.

    ``modulated=False`` (Latte's "all tokens" injection): ``LayerNorm (affine) -> Linear``, no modulation;
    the linear still starts at zero.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int, modulated: bool = True) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=not modulated, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = AdaLNModulation(hidden_size, 2) if modulated else None
        self.zero_()

    def zero_(self) -> None:
        """Zero the decoder and its modulation (adaLN-Zero)."""
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        if self.adaLN_modulation is not None:
            self.adaLN_modulation.zero_()

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, *tokens, hidden)`` -> ``(B, *tokens, p*p*C_out)``.

        ``c`` (modulated only): ``(B, hidden)``, or per frame ``(B, F, hidden)`` for ``x: (B, F, S, hidden)``
        (image-video joint training: every frame decoded under its own condition).
        """
        h = self.norm_final(x)
        if self.adaLN_modulation is not None:
            if c is None:
                raise ValueError("a modulated final layer needs the conditioning vector c")
            shift, scale = self.adaLN_modulation(c, token_dims=x.dim() - 2, frame_axis=1)
            h = modulate(h, shift, scale)
        return self.linear(h)
