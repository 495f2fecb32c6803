"""Noise (beta) schedules of the discrete diffusion chain."""

from __future__ import annotations

import math

import torch

BETA_SCHEDULES = ("linear", "cosine", "scaled_linear")

# DDPM's linear schedule is defined for a 1000-step chain; other lengths rescale both ends by 1000 / T.
_LINEAR_START, _LINEAR_END = 1e-4, 0.02
# Stable Diffusion's "scaled_linear" end points (linear in sqrt(beta)).
_SCALED_LINEAR_START, _SCALED_LINEAR_END = 0.00085, 0.012
# Nichol & Dhariwal's cosine schedule offset and beta cap.
_COSINE_OFFSET, _COSINE_MAX_BETA = 0.008, 0.999


def cosine_alpha_bar(u: torch.Tensor, s: float = _COSINE_OFFSET) -> torch.Tensor:
    """Un-normalised cosine ``alpha_bar`` at continuous time ``u`` in ``[0, 1]`` (any shape, same out).

    ``f(u) = cos(((u + s) / (1 + s)) * pi / 2) ** 2``; the schedule uses ``alpha_bar_t = f(t / T) / f(0)``.
    """
    return torch.cos((u + s) / (1 + s) * (math.pi / 2)) ** 2


def make_beta_schedule(
    kind: str,
    num_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
) -> torch.Tensor:
    """Build the betas of a ``num_timesteps``-step chain.

    Args:
        kind: ``"linear"`` (DDPM; 1e-4..0.02 at T=1000, both ends scaled by 1000/T otherwise),
            ``"cosine"`` (improved DDPM, ``s=0.008``, betas capped at 0.999) or ``"scaled_linear"``
            (Stable Diffusion: ``linspace(sqrt(0.00085), sqrt(0.012), T) ** 2``).
        num_timesteps: chain length ``T``.
        beta_start: overrides the first beta of ``linear`` / ``scaled_linear``.
        beta_end: overrides the last beta of ``linear`` / ``scaled_linear``.

    Returns:
        ``(T,)`` float64 betas, each in ``(0, 1)``.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if kind not in BETA_SCHEDULES:
        raise ValueError(f"unknown beta schedule {kind!r}; allowed: {', '.join(BETA_SCHEDULES)}")
    if kind == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("beta_start / beta_end do not apply to the cosine schedule")
        return _cosine_betas(num_timesteps)
    if kind == "linear":
        scale = 1000.0 / num_timesteps
        start = scale * _LINEAR_START if beta_start is None else beta_start
        end = scale * _LINEAR_END if beta_end is None else beta_end
        betas = torch.linspace(start, end, num_timesteps, dtype=torch.float64)
    else:  # scaled_linear
        start = _SCALED_LINEAR_START if beta_start is None else beta_start
        end = _SCALED_LINEAR_END if beta_end is None else beta_end
        betas = torch.linspace(math.sqrt(start), math.sqrt(end), num_timesteps, dtype=torch.float64) ** 2
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"{kind} schedule gives betas outside (0, 1): start={start}, end={end}")
    return betas


def _cosine_betas(num_timesteps: int) -> torch.Tensor:
    """``(T,)`` float64 cosine-schedule betas: ``1 - f((t+1)/T) / f(t/T)``, capped at 0.999."""
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = cosine_alpha_bar(u)
    betas = 1.0 - f[1:] / f[:-1]
    return betas.clamp(max=_COSINE_MAX_BETA)
