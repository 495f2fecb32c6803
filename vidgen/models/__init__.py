"""Denoisers: ``forward(x, t, cond) -> out`` on latent videos ``(B, C, F, H, W)``."""

from vidgen.models.latent_unet import LATENT_UNET_SIZES, TEMPORAL_MODES, LatentUNet
from vidgen.models.latte import LATTE_SIZES, BlockRole, Latte, LatteSize, block_layout
from vidgen.models.vdm_unet3d import VDM_SIZES, VDMSize, VDMUNet3D

__all__ = [
    "LATENT_UNET_SIZES",
    "LATTE_SIZES",
    "TEMPORAL_MODES",
    "VDM_SIZES",
    "BlockRole",
    "LatentUNet",
    "Latte",
    "LatteSize",
    "VDMSize",
    "VDMUNet3D",
    "block_layout",
]
