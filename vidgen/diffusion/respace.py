"""Respacing: a shorter chain that keeps a subset of the original timesteps (improved DDPM, section 4)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from vidgen.diffusion.gaussian import GaussianDiffusion
from vidgen.diffusion.spacing import space_timesteps

__all__ = ["respace", "space_timesteps"]


def respace(diffusion: GaussianDiffusion, use_timesteps: Iterable[int]) -> GaussianDiffusion:
    """A chain over the kept steps ``use_timesteps`` (indices of ``diffusion``'s chain).

    Its betas are ``beta_i = 1 - ab[k_i] / ab[k_{i-1}]`` (``ab[k_{-1}] = 1``), so its ``alpha_bar`` equals the
    original ``alpha_bar`` at the kept steps; learned variances then interpolate between the respaced betas and
    respaced posterior variances. ``timestep_map`` composes with ``diffusion``'s, so it always gives
    original-chain timesteps. Prediction type, ``learn_sigma`` and loss are kept.
    """
    kept = sorted({int(k) for k in use_timesteps})
    if not kept:
        raise ValueError("use_timesteps is empty")
    if kept[0] < 0 or kept[-1] >= diffusion.num_timesteps:
        raise ValueError(
            f"use_timesteps must lie in [0, {diffusion.num_timesteps}), got {kept[0]}..{kept[-1]}"
        )
    index = torch.tensor(kept, dtype=torch.int64)
    alphas_cumprod = diffusion.alphas_cumprod.cpu()[index]
    previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    betas = 1.0 - alphas_cumprod / previous
    return GaussianDiffusion(
        betas,
        prediction=diffusion.prediction,
        learn_sigma=diffusion.learn_sigma,
        loss=diffusion.loss_type,
        timestep_map=diffusion.timestep_map.cpu()[index],
        min_snr_gamma=diffusion.min_snr_gamma,
        timestep_sampling=diffusion.timestep_sampling,
    )
