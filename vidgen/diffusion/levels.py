"""The noise levels a sampler walks, shared by the discrete chains and the continuous-time diffusion.

A sampling grid of ``N`` steps visits the levels ``0, 1, ..., N-1`` (noisiest first) and ends at level ``N``,
the clean data (``alpha = 1``, ``sigma = 0``). At level ``k`` the noisy sample is
``z_k = alpha_k x + sigma_k eps`` and the model is called with ``times[k]``: the original-chain step (int64)
for a discrete chain, the log-SNR ``lambda_k = log(alpha_k^2 / sigma_k^2)`` (float) for the continuous one.

The step coefficients below are Kingma et al.'s / Ho et al.'s (VDM) in terms of ``r = exp(lambda_t -
lambda_s) = (alpha_t sigma_s)^2 / (sigma_t alpha_s)^2`` for a step from ``t`` (level ``k``) to ``s`` (level
``k+1``), written so that ``s`` may be the clean level (``r = 0``, where the step returns ``x_hat``):

* posterior ``q(z_s | z_t, x) = N(mean_z z_t + mean_x x, var_posterior)`` with ``mean_z = r alpha_s / alpha_t``,
  ``mean_x = (1 - r) alpha_s``, ``var_posterior = (1 - r) sigma_s^2``;
* forward ``q(z_t | z_s)`` has variance ``var_forward = sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2 =
  (1 - r) sigma_t^2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["NoiseLevels", "StepCoefficients"]


@dataclass(frozen=True)
class StepCoefficients:
    """Float64 scalars of one step from ``t`` to ``s`` (see the module docstring)."""

    alpha_t: float
    sigma_t: float
    alpha_s: float
    sigma_s: float
    mean_z: float
    mean_x: float
    var_posterior: float
    var_forward: float

    @property
    def final(self) -> bool:
        """``s`` is the clean level (``sigma_s = 0``): the step returns the data prediction."""
        return self.sigma_s == 0.0


@dataclass(frozen=True)
class NoiseLevels:
    """A sampling grid: ``N`` noise levels, noisiest first, followed by the clean level.

    Attributes:
        times: ``(N,)`` what the model is called with at each level: int64 original-chain steps (discrete) or
            float64 log-SNR values (continuous).
        alphas: ``(N + 1,)`` float64 signal scales, ``alphas[N] = 1``.
        sigmas: ``(N + 1,)`` float64 noise scales, ``sigmas[N] = 0``; ``alphas**2 + sigmas**2 = 1``.
    """

    times: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor

    def __post_init__(self) -> None:
        steps = self.times.numel()
        if steps < 1 or self.times.dim() != 1:
            raise ValueError(f"times must be a non-empty 1-D tensor, got shape {tuple(self.times.shape)}")
        if self.alphas.shape != (steps + 1,) or self.sigmas.shape != (steps + 1,):
            raise ValueError(
                f"alphas and sigmas must have shape ({steps + 1},), got {tuple(self.alphas.shape)} and "
                f"{tuple(self.sigmas.shape)}"
            )
        if self.alphas[-1].item() != 1.0 or self.sigmas[-1].item() != 0.0:
            raise ValueError("the last level must be the clean data: alpha 1, sigma 0")
        if not bool((self.sigmas[:-1] > 0).all()):
            raise ValueError("every level but the last must have sigma > 0")
        snr = self.alphas[:-1] / self.sigmas[:-1]
        if not bool((snr[1:] > snr[:-1]).all()):
            raise ValueError("the levels must go from noisy to clean (alpha / sigma strictly increasing)")

    @classmethod
    def from_alpha_bar(cls, times: torch.Tensor, alpha_bar: torch.Tensor) -> NoiseLevels:
        """Levels of a discrete chain from its ``(N,)`` ``alpha_bar`` at the visited steps, noisiest first."""
        alpha_bar = alpha_bar.detach().cpu().to(torch.float64)
        one = alpha_bar.new_ones(1)
        return cls(
            times=times.detach().cpu(),
            alphas=torch.cat([alpha_bar.sqrt(), one]),
            sigmas=torch.cat([(1.0 - alpha_bar).sqrt(), one * 0.0]),
        )

    @classmethod
    def from_logsnr(cls, logsnr: torch.Tensor) -> NoiseLevels:
        """Levels of a continuous variance-preserving diffusion from its ``(N,)`` log-SNR values (increasing);
        the model is called with the log-SNR itself."""
        logsnr = logsnr.detach().cpu().to(torch.float64)
        one = logsnr.new_ones(1)
        return cls(
            times=logsnr,
            alphas=torch.cat([torch.sigmoid(logsnr).sqrt(), one]),
            sigmas=torch.cat([torch.sigmoid(-logsnr).sqrt(), one * 0.0]),
        )

    def __len__(self) -> int:
        """Number of steps ``N`` (model evaluations of a plain sampler)."""
        return self.times.numel()

    def time(self, k: int, batch: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
        """``(batch,)`` model time of level ``k``: int64 steps stay int64, float times take ``dtype``."""
        value = self.times[k]
        out_dtype = torch.int64 if not value.is_floating_point() else dtype
        return torch.full((batch,), value.item(), dtype=out_dtype, device=device)

    def step(self, k: int) -> StepCoefficients:
        """Coefficients of the step from level ``k`` to level ``k + 1``."""
        a_t, s_t = self.alphas[k].item(), self.sigmas[k].item()
        a_s, s_s = self.alphas[k + 1].item(), self.sigmas[k + 1].item()
        # r = exp(lambda_t - lambda_s), computed from the scales so that s may be the clean level (r = 0)
        r = (a_t * s_s) ** 2 / (s_t * a_s) ** 2
        return StepCoefficients(
            alpha_t=a_t,
            sigma_t=s_t,
            alpha_s=a_s,
            sigma_s=s_s,
            mean_z=a_t * s_s**2 / (s_t**2 * a_s),  # r * a_s / a_t without dividing by a tiny a_t
            mean_x=(1.0 - r) * a_s,
            var_posterior=(1.0 - r) * s_s**2,
            var_forward=(1.0 - r) * s_t**2,
        )
