"""Shared helpers of the Latte model tests: tiny float64 models (zero / non-zero is exact) and inputs."""

from __future__ import annotations

from typing import Any

import torch

from vidgen.models import Latte

#: 4 frames of 8x8 pixels, patch 2 -> a 4x4 patch grid, 2 blocks of width 16
TINY: dict[str, Any] = dict(
    size="tiny", depth=2, hidden_size=16, num_heads=2, in_channels=2, input_size=8, num_frames=4
)


def tiny_latte(base: dict[str, Any] | None = None, **overrides: Any) -> Latte:
    """A float64 Latte of ``base`` (default :data:`TINY`) with ``overrides``, seeded."""
    torch.manual_seed(0)
    return Latte(**{**(TINY if base is None else base), **overrides}).double()


def randomize_zero_init(model: torch.nn.Module, std: float = 0.1, seed: int = 1) -> None:
    """Random values for every all-zero parameter (adaLN-Zero, final layer, cross-attention output, biases),
    so that no path of the model is switched off by its initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)


def video(b: int = 2, c: int = 2, f: int = 4, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    """``(b, c, f, h, w)`` float64 standard-normal latents."""
    return torch.randn(b, c, f, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
