"""diffusers' ``UNet3DConditionModel`` (the ModelScope text-to-video U-Net) as a vidgen denoiser: the peer that
the VDM 3D U-Net is measured against (``python -m vidgen.bench 'bench.compare=[vdm_unet3d,diffusers_unet3d]'``).

The network is diffusers' own, kept as it is in the attribute ``unet`` (its state-dict keys are diffusers'),
built from a config without weights. What it is (``vidgen/shared`` VDM spec, section 4): 2D 3x3 convolutions
on every frame, a temporal convolution block (four ``(3, 1, 1)`` convolutions, the last zero-initialised)
after every ResNet, a temporal transformer after ``conv_in`` and after every spatial transformer, text by
cross-attention, the integer timestep embedded, no temporal position encoding.

Forward: ``x (B, C, F, H, W)`` is diffusers' layout already; ``t (B,)`` the timestep (or the log-SNR under
``diffusion=vdm``: the U-Net's sinusoidal embedding takes any float); the text states ``cond.text (B, L,
cross_attention_dim)`` feed its cross-attention. Without text the U-Net reads one all-zero token: an
unconditional model. Class labels are not supported (diffusers' ``class_labels`` argument is unused by this
U-Net) and image-video joint training is refused: nothing in it could keep the appended images out of the
temporal layers.

Sizes (``size``): ``tiny`` for CPU work (blocks 24 / 48, one layer per block, cross-attention width 32: about
the tiny VDM U-Net's parameter count, so ``model.size=tiny`` compares equal sizes) and
``modelscope`` (ModelScope's 320 / 640 / 1280 / 1280, two layers per block, head dim 64, cross-attention
width 1024). ``block_out_channels``, ``layers_per_block`` and ``attention_head_dim`` override a size, e.g. to
match another model's parameter count in a benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.checks import checked_choice, checked_int, checked_square_side

__all__ = ["DIFFUSERS_UNET3D_SIZES", "DiffusersUNet3D", "unet3d_config"]

#: size -> (block_out_channels, layers_per_block, attention_head_dim, norm_num_groups, cross_attention_dim)
DIFFUSERS_UNET3D_SIZES: dict[str, tuple[tuple[int, ...], int, int, int, int]] = {
    "tiny": ((24, 48), 1, 8, 8, 32),
    "modelscope": ((320, 640, 1280, 1280), 2, 64, 32, 1024),
}


def unet3d_config(
    size: str,
    in_channels: int,
    out_channels: int,
    cross_attention_dim: int = 0,
    block_out_channels: Sequence[int] | None = None,
    layers_per_block: int | None = None,
    attention_head_dim: int | None = None,
) -> dict[str, Any]:
    """``UNet3DConditionModel`` keyword arguments of a size, with optional overrides (see the module
    docstring); ``cross_attention_dim`` 0 takes the size's width. The first level and all but the last are
    cross-attention blocks, the last a plain one, as in ModelScope's layout."""
    checked_choice("model.size", size, tuple(DIFFUSERS_UNET3D_SIZES))
    channels, layers, head_dim, groups, width = DIFFUSERS_UNET3D_SIZES[size]
    channels = tuple(checked_int("model.block_out_channels", c) for c in (block_out_channels or channels))
    if any(c % groups for c in channels):
        raise ConfigError(
            "model.block_out_channels",
            f"every width must be divisible by {groups} norm groups, got {channels}",
        )
    levels = len(channels)
    return {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "down_block_types": ("CrossAttnDownBlock3D",) * (levels - 1) + ("DownBlock3D",),
        "up_block_types": ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * (levels - 1),
        "block_out_channels": channels,
        "layers_per_block": checked_int(
            "model.layers_per_block", layers if layers_per_block is None else layers_per_block
        ),
        "attention_head_dim": checked_int(
            "model.attention_head_dim", head_dim if attention_head_dim is None else attention_head_dim
        ),
        "norm_num_groups": groups,
        "cross_attention_dim": width
        if not cross_attention_dim
        else checked_int("model.cross_attention_dim", cross_attention_dim),
    }


class DiffusersUNet3D(nn.Module):
    """diffusers' ``UNet3DConditionModel`` on vidgen's ``(x, t, cond)`` interface (see the module docstring).

    Args:
        size: ``tiny`` or ``modelscope``.
        in_channels: latent (or pixel) channels ``C``.
        input_size: latent height = width, divisible by ``2^(levels - 1)`` (the U-Net's downsamplings).
        num_frames: the clip length (recorded; the U-Net runs any number of frames).
        learn_sigma: output ``2C`` channels (eps and the variance interpolation).
        num_classes: must be 0: the U-Net has no class conditioning (a class-conditional recipe fails here,
            naming ``model.num_classes``, before any training).
        cross_attention_dim: width of the text states (``conditioner.text_dim``); 0 = the size's width, with
            one all-zero token when there is no text.
        block_out_channels, layers_per_block, attention_head_dim: override the size's value when not None.
    """

    def __init__(
        self,
        size: str = "tiny",
        in_channels: int = 4,
        input_size: int = 32,
        num_frames: int = 16,
        learn_sigma: bool = False,
        num_classes: int = 0,
        cross_attention_dim: int = 0,
        block_out_channels: Sequence[int] | None = None,
        layers_per_block: int | None = None,
        attention_head_dim: int | None = None,
    ) -> None:
        super().__init__()
        from diffusers import UNet3DConditionModel  # only this model needs it at build time

        self.in_channels = checked_int("model.in_channels", in_channels)
        self.out_channels = 2 * self.in_channels if learn_sigma else self.in_channels
        config = unet3d_config(
            size,
            self.in_channels,
            self.out_channels,
            cross_attention_dim,
            block_out_channels,
            layers_per_block,
            attention_head_dim,
        )
        self.cross_attention_dim = int(config["cross_attention_dim"])
        self.num_frames = checked_int("model.num_frames", num_frames)
        self.input_size = checked_square_side("model.input_size", input_size, "diffusers_unet3d")
        factor = 2 ** (len(config["block_out_channels"]) - 1)
        if self.input_size % factor:
            raise ConfigError(
                "model.input_size",
                f"must be divisible by {factor} (the U-Net's downsamplings), got {input_size}",
            )
        if checked_int("model.num_classes", num_classes, 0):
            raise ConfigError(
                "model.num_classes",
                f"diffusers' UNet3DConditionModel has no class conditioning, got {num_classes} classes; use "
                "conditioner=none or conditioner=text",
            )
        self.unet = UNet3DConditionModel(**config)

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """``x (B, C, F, H, W)``, ``t (B,)`` (a 0-d tensor is broadcast), ``cond.text (B, L, D)`` or no text
        -> ``(B, C_out, F, H, W)``."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}")
        batch = x.shape[0]
        if t.dim() == 0:
            t = t.expand(batch)
        if cond is not None and cond.labels is not None:
            raise ValueError("diffusers' UNet3DConditionModel has no class conditioning; use text or none")
        if cond is not None and cond.num_video_frames not in (None, x.shape[2]):
            raise ValueError(
                "image-video joint training (cond.num_video_frames) is not supported by diffusers' "
                "UNet3DConditionModel: its temporal convolutions and attention would mix the images into the clip"
            )
        if cond is None or cond.text is None:
            text = x.new_zeros(batch, 1, self.cross_attention_dim)
        else:
            text, _ = cond.checked_text(batch, self.cross_attention_dim, "model.cross_attention_dim")
        return self.unet(x, t, encoder_hidden_states=text.to(x.dtype), return_dict=False)[0]
