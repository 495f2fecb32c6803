"""The two diffusion networks of CMD's stage 2 held as one module (one optimizer, one EMA twin, one
checkpoint): the content-frame model and the motion model. They are independent given the frozen
autoencoder: each sees only its own latent (and the motion model the content frame)."""

from __future__ import annotations

import torch
from torch import nn

from vidgen.conditioning import Cond


class CMDDenoisers(nn.Module):
    """CMD's content-frame and motion denoisers.

    Args:
        content: an image denoiser ``forward(x (B, C, 1, h, w), t (B,), cond) -> (B, C or 2C, 1, h, w)``
            (Latte with ``variant=0``, i.e. DiT, by default).
        motion: the motion denoiser ``forward(z (B, D, F, w'+h'), t (B,), cond) -> (B, D or 2D, F, w'+h')``
            that reads the content frame from ``cond.content_frame`` (:class:`MotionDiT`).
    """

    def __init__(self, content: nn.Module, motion: nn.Module) -> None:
        super().__init__()
        self.content = content
        self.motion = motion

    def independent_networks(self) -> list[nn.Module]:
        """The two networks, each called on its own by the training and sampling code (one FSDP unit each:
        :func:`vidgen.lit.parallel.independent_networks`)."""
        return [self.content, self.motion]

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Route by input rank-shape: a one-frame ``(B, C, 1, h, w)`` goes to the content model, a motion
        latent ``(B, D, F, L)`` (4-D) to the motion model."""
        if x.dim() == 5:
            return self.content(x, t, cond)
        if x.dim() == 4:
            return self.motion(x, t, cond)
        raise ValueError(
            f"CMD denoisers take (B, C, 1, h, w) content or (B, D, F, L) motion, got {tuple(x.shape)}"
        )
