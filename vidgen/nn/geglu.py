"""The gated-GELU feed-forward sub-layer (GEGLU, Shazeer 2020), as in PVDM's and CMD's video ViTs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GEGLUFeedForward(nn.Module):
    """``Linear(dim -> 2*mult*dim)``, split into halves ``(a, gate)``, ``Linear(mult*dim -> dim)(a * gelu(gate))``.

    Gate choice: the **second** half of ``proj_in``'s output is the gate and the first half the value, as
    in PVDM / CMD's ``GEGLU`` (``x, gates = x.chunk(2, -1); x * gelu(gates)``), so release weights map
    one-to-one (``proj_in`` = the first Linear, ``proj_out`` = the last). The GELU is the exact (erf) one.
    At ``dim = 384, mult = 4``: 384 -> 3072 (1,182,720 parameters), 1536 -> 384 (590,208).
    """

    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = mult * dim
        self.proj_in = nn.Linear(dim, 2 * inner)
        self.proj_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (..., dim)``."""
        value, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))
