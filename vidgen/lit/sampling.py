"""Checks of a trained :class:`~vidgen.lit.module.VideoDiffusionModule` before it samples."""

from __future__ import annotations

import torch

from vidgen.config.errors import ConfigError
from vidgen.lit.module import VideoDiffusionModule

__all__ = ["check_frame_count"]


def check_frame_count(
    module: VideoDiffusionModule, labels: torch.Tensor | None, captions: list[str] | None
) -> None:
    """Run the sampling denoiser once on one clip of the module's frame count (the first sample's condition:
    ``labels`` ``(N,)`` / ``captions`` of the samples to make).

    Raises:
        ConfigError: ``data.num_frames`` when the denoiser fails on that many frames or returns another
            number of frames (e.g. a Latte with a tube patch embedding of stride 2 given one frame).
    """
    latent = torch.zeros((1, *module.latent_shape), device=module.device)  # (1, c, F, h, w)
    cond = module.conditioner.for_sampling(
        1,
        device=module.device,
        labels=None if labels is None else labels[:1],
        captions=None if captions is None else captions[:1],
    )
    frames = latent.shape[2]
    cannot = f"this checkpoint's model cannot sample {frames} frame{'' if frames == 1 else 's'}"
    try:
        with torch.no_grad():
            out = module.sampling_denoiser(
                latent, torch.zeros(1, dtype=torch.long, device=module.device), cond
            )
    except (RuntimeError, ValueError) as error:
        raise ConfigError("data.num_frames", f"{cannot}: {error}") from error
    if out.shape[2:] != latent.shape[2:]:
        raise ConfigError(
            "data.num_frames",
            f"{cannot}: given a latent clip of shape {tuple(latent.shape)} it returns {tuple(out.shape)}",
        )
