"""Temporal self-attention over the frames at each spatial position (the Latent-VDM baseline's layer).

Latent-VDM (Latent-Shift paper, seed 001) adds a temporal attention layer after each spatial transformer of
a text-to-image U-Net, as VDM and MagicVideo do. The layer here works on frames stacked in the batch,
``(B*F, C, H, W)``, clip-major, and is one pre-norm residual sub-layer:

    tokens (B*H*W, F, C) -> x + proj(attention(LayerNorm(x)))

* attention: :class:`vidgen.nn.attention.Attention` (fused ``qkv``, output ``proj``), every frame attends
  to every frame of its clip at the same spatial position (no causal mask);
* temporal position: **relative**, rotary embedding (RoPE, :mod:`vidgen.nn.rope`) of queries and keys
  over the frame index, so scores depend on frame offsets only (the paper's Latent-VDM has "relative
  position inputs"); no table is added to the features and no parameter is spent on it;
* the output projection is zero-initialised, so a fresh layer is exactly the identity and a pretrained
  image U-Net wrapped with these layers starts as the per-frame image model.

Parameters per layer of width ``C``: LayerNorm ``2C``, ``qkv`` ``3C^2 + 3C``, ``proj`` ``C^2 + C``, in all
``4C^2 + 6C`` (the counts at each U-Net size, next to the paper's: ``experiments/latent_shift/README.md``).

Image-video joint training (``clip_frames < F``): the clip frames attend among themselves; every frame
after the clip is an independent image, a one-frame video that attends only to itself (VDM's joint
training mask), the same thing the layer does with ``F = 1``.

:func:`attach_temporal_attention` runs the layers as forward hooks of the U-Net's spatial transformers; the
hooks read the frame layout from the video model's :class:`~vidgen.nn.frame_hooks.FrameContext` (the
frame-hook plumbing shared with the temporal shift: :mod:`vidgen.nn.frame_hooks`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.nn.attention import Attention
from vidgen.nn.frame_hooks import FrameContext, HookHandles, check_frame_layout
from vidgen.nn.rope import rope_angles

__all__ = [
    "TemporalAttention",
    "TemporalAttentionHook",
    "attach_temporal_attention",
    "build_temporal_layers",
    "spatial_transformers",
]


class TemporalAttention(nn.Module):
    """Pre-norm temporal self-attention with RoPE over frames and a zero-initialised output (identity at init).

    Args:
        channels: feature width ``C``.
        num_heads: attention heads; ``C / num_heads`` must be even (RoPE).
        eps: LayerNorm epsilon.
    """

    def __init__(self, channels: int, num_heads: int, eps: float = 1e-5) -> None:
        super().__init__()
        if channels % num_heads or (channels // num_heads) % 2:
            raise ValueError(
                f"temporal attention needs an even head width (RoPE): {channels} channels / {num_heads} heads"
            )
        self.channels = channels
        self.head_dim = channels // num_heads
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.attn = Attention(channels, num_heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """LayerNorm (1, 0), xavier-uniform ``qkv`` with zero bias, zero output projection (identity layer)."""
        self.norm.reset_parameters()
        nn.init.xavier_uniform_(self.attn.qkv.weight)
        nn.init.zeros_(self.attn.qkv.bias)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor, num_frames: int, clip_frames: int | None = None) -> torch.Tensor:
        """Attend over time at each spatial position.

        Args:
            x: ``(B*F, C, H, W)`` with the ``F`` frames of each sample consecutive (clip-major).
            num_frames: ``F``; must divide the batch dimension.
            clip_frames: image-video joint training: frames ``[0, clip_frames)`` are the clip, the rest are
                independent images (each attends only to itself). None = all ``F`` frames are the clip.

        Returns:
            ``(B*F, C, H, W)``.
        """
        clip = check_frame_layout(x.shape[0], num_frames, clip_frames)
        video = rearrange(x, "(b f) c h w -> b f c h w", f=num_frames)
        parts = []
        if clip > 0:
            parts.append(self._attend(video[:, :clip]))
        if clip < num_frames:  # images: one-frame videos
            images = video[:, clip:]
            single = rearrange(images, "b k c h w -> (b k) 1 c h w")
            parts.append(rearrange(self._attend(single), "(b k) 1 c h w -> b k c h w", b=images.shape[0]))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return rearrange(out, "b f c h w -> (b f) c h w")

    def _attend(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, H, W)`` -> ``(B, T, C, H, W)``: the residual sub-layer over the ``T`` frames."""
        b, t, _, h, w = video.shape
        tokens = rearrange(video, "b t c h w -> (b h w) t c")
        dtype = torch.float64 if tokens.dtype == torch.float64 else torch.float32
        rope = rope_angles(torch.arange(t, device=tokens.device), self.head_dim, dtype=dtype)
        tokens = tokens + self.attn(self.norm(tokens), rope=rope)
        return rearrange(tokens, "(b h w) t c -> b t c h w", b=b, h=h, w=w)


def spatial_transformers(unet: nn.Module) -> list[nn.Module]:
    """Every diffusers ``Transformer2DModel`` inside ``unet``, in module (registration) order."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    return [module for module in unet.modules() if isinstance(module, Transformer2DModel)]


def build_temporal_layers(unet: nn.Module) -> nn.ModuleList:
    """One fresh :class:`TemporalAttention` per spatial transformer of ``unet`` (in
    :func:`spatial_transformers` order), as wide as the transformer's output and with as many heads."""
    layers = []
    for transformer in spatial_transformers(unet):
        config = transformer.config
        layers.append(
            TemporalAttention(config.out_channels or config.in_channels, config.num_attention_heads)
        )
    return nn.ModuleList(layers)


class TemporalAttentionHook:
    """``forward_hook`` of a spatial transformer: passes its output through a temporal attention layer.

    Reads the frame layout from its :class:`~vidgen.nn.frame_hooks.FrameContext` at every call. The layer
    is held here and registered (owned) by the video model, not by the U-Net, so the U-Net's state dict
    keeps the image model's keys. When the transformer has diffusers' gradient checkpointing switched on
    and gradients are enabled, the temporal layer is checkpointed too.
    """

    def __init__(self, layer: TemporalAttention, context: FrameContext) -> None:
        self.layer = layer
        self.context = context

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        """``output``: a tuple whose first item, or an object whose ``sample``, is ``(B*F, C, H, W)``."""
        num_frames, clip_frames = self.context.layout()
        hidden = output[0] if isinstance(output, tuple) else output.sample
        if getattr(module, "gradient_checkpointing", False) and torch.is_grad_enabled():
            hidden = checkpoint(self.layer, hidden, num_frames, clip_frames, use_reentrant=False)
        else:
            hidden = self.layer(hidden, num_frames, clip_frames)
        if isinstance(output, tuple):
            return (hidden, *output[1:])
        return replace(output, sample=hidden)


def attach_temporal_attention(unet: nn.Module, layers: nn.ModuleList, context: FrameContext) -> HookHandles:
    """Run ``layers[i]`` after the ``i``-th spatial transformer of ``unet`` (forward hooks).

    Args:
        unet: a diffusers U-Net with ``Transformer2DModel`` blocks.
        layers: from :func:`build_temporal_layers` on the same U-Net architecture (one per transformer).
        context: the shared layout the wrapping model sets before each U-Net call.

    Returns:
        the handles; ``remove()`` restores the plain U-Net.
    """
    transformers = spatial_transformers(unet)
    if len(transformers) != len(layers):
        raise ValueError(f"{len(layers)} temporal layers for {len(transformers)} spatial transformers")
    return HookHandles(
        [
            transformer.register_forward_hook(TemporalAttentionHook(layer, context))
            for transformer, layer in zip(transformers, layers, strict=True)
        ]
    )
