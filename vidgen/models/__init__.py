"""Denoisers: ``forward(x, t, cond) -> out`` on latent videos ``(B, C, F, H, W)``."""

from vidgen.models.latent_unet import LATENT_UNET_SIZES, TEMPORAL_MODES, LatentUNet
from vidgen.models.latte import LATTE_SIZES, BlockRole, Latte, LatteSize, block_layout

__all__ = [
    "LATENT_UNET_SIZES",
    "LATTE_SIZES",
    "TEMPORAL_MODES",
    "BlockRole",
    "LatentUNet",
    "Latte",
    "LatteSize",
    "block_layout",
]
