"""Patch embeddings for latent videos: per frame (2D) or per tube (3D), and the tube's temporal upsampler."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class FramePatchEmbed(nn.Module):
    """Per-frame 2D patch embedding (Latte's "uniform frame patch embedding"; ViT/DiT on every frame).

    ``Conv2d(C, hidden, p, stride=p)`` named ``proj`` (DiT's ``x_embedder.proj``), applied to every frame.
    """

    temporal_stride = 1

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, F, H, W)`` -> tokens ``(B, F, h*w, hidden)``, ``h = H/p``, ``w = W/p``, patches row-major."""
        b = x.shape[0]
        frames = rearrange(x, "b c f h w -> (b f) c h w")  # frames ride in the batch
        tokens = self.proj(frames)  # (B*F, hidden, h, w)
        return rearrange(tokens, "(b f) d h w -> b f (h w) d", b=b)


class TubePatchEmbed(nn.Module):
    """3D tube embedding (Latte's "compression frame patch embedding", ViViT's tubelets; seed 002 Fig. 3b).

    ``Conv3d(C, hidden, (s, p, p), stride=(s, p, p))`` named ``proj``: non-overlapping tubes of ``s``
    frames x ``p x p`` pixels, so ``F`` frames give ``F/s`` token frames.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int, temporal_stride: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.temporal_stride = temporal_stride
        kernel = (temporal_stride, patch_size, patch_size)
        self.proj = nn.Conv3d(in_channels, hidden_size, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, F, H, W)``, ``F`` divisible by ``s`` -> tokens ``(B, F/s, h*w, hidden)``, row-major."""
        if x.shape[2] % self.temporal_stride:
            raise ValueError(
                f"{x.shape[2]} frames are not divisible by the tube's temporal stride {self.temporal_stride}"
            )
        return rearrange(self.proj(x), "b d f h w -> b f (h w) d")


class TemporalUpsample(nn.Module):
    """The tube embedding's decoder tail: ``ConvTranspose3d(s*C, C, (s, 1, 1), stride=(s, 1, 1))`` named ``proj``.

    Applied after the linear decoder and unpatchify (seed 002, Sec. 3.3.1: "temporal upsampling by a 3D
    transposed convolution"). The linear decoder emits ``in_channels = s * C`` channels per token frame (a
    bottleneck wide enough for the ``s`` frames of a tube: with only ``C`` channels the ``s`` output frames
    would be linear maps of the same ``C`` numbers, rank ``C`` of ``s*C``), and every token frame becomes
    ``s`` frames of ``C`` channels, each a per-pixel linear map of the decoded channels.
    :meth:`reset_parameters` starts it as channel-block selection: output frame ``k`` of a tube is decoded
    channels ``k*C .. (k+1)*C - 1``, i.e. the linear decoder decodes the tubelet directly.

    Args:
        in_channels: decoded channels per token frame, ``>= s * out_channels`` (``s * out_channels`` as
            Latte builds it).
        out_channels: ``C`` channels of every output frame.
        temporal_stride: ``s`` frames per tube.
    """

    def __init__(self, in_channels: int, out_channels: int, temporal_stride: int) -> None:
        super().__init__()
        if in_channels < temporal_stride * out_channels:
            raise ValueError(
                f"a tube decoder of {temporal_stride} frames x {out_channels} channels needs at least "
                f"{temporal_stride * out_channels} decoded channels, got {in_channels}"
            )
        self.temporal_stride = temporal_stride
        self.out_channels = out_channels
        kernel = (temporal_stride, 1, 1)
        self.proj = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=kernel, stride=kernel)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Channel-block selection: ``weight[k*C + o, o, k] = 1``, every other weight and the bias 0."""
        with torch.no_grad():
            self.proj.weight.zero_()
            c, s = self.out_channels, self.temporal_stride
            out = torch.arange(c, device=self.proj.weight.device)
            for k in range(s):
                self.proj.weight[k * c + out, out, k] = 1.0  # weight: (C_in, C, s, 1, 1)
            self.proj.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, F/s, H, W) -> (B, C, F, H, W)``."""
        return self.proj(x)
