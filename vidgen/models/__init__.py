"""Denoisers: ``forward(x, t, cond) -> out`` on latent videos ``(B, C, F, H, W)``."""

from vidgen.models.latte import LATTE_SIZES, BlockRole, Latte, LatteSize, block_layout

__all__ = ["LATTE_SIZES", "BlockRole", "Latte", "LatteSize", "block_layout"]
