"""Continuous-time Gaussian diffusion on a log-SNR schedule (VDM: Kingma et al. 2021; Ho, Salimans et al. 2022).

``q(z_t | x) = N(alpha_t x, sigma_t^2 I)`` for ``t`` in ``[0, 1]`` with ``alpha_t^2 = sigmoid(lambda_t)``,
``sigma_t^2 = sigmoid(-lambda_t)`` (variance preserving) and the cosine log-SNR schedule

    ``lambda(t) = -2 log tan(a t + b)``,  ``b = arctan(exp(-lambda_max / 2))``,
    ``a = arctan(exp(-lambda_min / 2)) - b``,

so ``lambda(0) = lambda_max`` (20) and ``lambda(1) = lambda_min`` (-20). Training draws ``t ~ U[0, 1]`` and
regresses the eps (or v, or x0) target with a mean squared error; the denoiser is called with ``lambda_t``
(a float ``(B,)`` tensor), not with a step index. Samplers walk :meth:`VDMDiffusion.noise_levels`, a uniform
grid of ``t`` from 1 down to ``1 / N`` followed by the clean data.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vidgen.diffusion.levels import NoiseLevels
from vidgen.diffusion.losses import mean_flat
from vidgen.diffusion.parameterization import check_prediction, prediction_target
from vidgen.diffusion.timestep_sampling import check_timestep_sampling, unit_times

__all__ = ["LOGSNR_SCHEDULES", "VDMDiffusion", "build_vdm_diffusion", "cosine_logsnr"]

LOGSNR_SCHEDULES = ("cosine_logsnr",)
VDM_LOSSES = ("mse",)

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_logsnr(t: torch.Tensor, logsnr_min: float = -20.0, logsnr_max: float = 20.0) -> torch.Tensor:
    """Cosine log-SNR ``lambda(t) = -2 log tan(a t + b)`` with ``lambda(0) = logsnr_max``,
    ``lambda(1) = logsnr_min``; ``t`` any shape in ``[0, 1]``, result float64 of the same shape."""
    t = torch.as_tensor(t, dtype=torch.float64)
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return -2.0 * torch.log(torch.tan(a * t + b))


class VDMDiffusion:
    """Continuous-time variance-preserving diffusion with the cosine log-SNR schedule.

    Args:
        logsnr_min: ``lambda(1)``, the noisiest level (VDM: -20).
        logsnr_max: ``lambda(0)``, the cleanest level (VDM: 20).
        prediction: what the model predicts: ``"eps"``, ``"v"`` (``v = alpha eps - sigma x``) or ``"x0"``.
        loss: ``"mse"``, the mean squared error of the prediction against its target.
        learn_sigma: must be ``False`` (VDM samples with the gamma-interpolated fixed variance).
        timestep_sampling: how a training batch draws ``t``: ``"uniform"`` (independent) or
            ``"low_discrepancy"`` (VDM's sampler: one ``t`` per ``1 / B`` stratum;
            :mod:`vidgen.diffusion.timestep_sampling`).

    The interface the LightningModule and the samplers use is the one of
    :class:`~vidgen.diffusion.gaussian.GaussianDiffusion`: ``sample_timesteps``, ``training_losses``,
    ``noise_levels``, ``prediction``, ``learn_sigma``, ``to``. Its "timesteps" are ``(B,)`` float64 ``t``.
    """

    model_time = "logsnr"
    """The denoiser's ``t`` argument is the log-SNR ``lambda_t`` (a float tensor)."""

    def __init__(
        self,
        logsnr_min: float = -20.0,
        logsnr_max: float = 20.0,
        prediction: str = "eps",
        loss: str = "mse",
        learn_sigma: bool = False,
        timestep_sampling: str = "uniform",
    ) -> None:
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min must be < logsnr_max, got {logsnr_min} and {logsnr_max}")
        if loss not in VDM_LOSSES:
            raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(VDM_LOSSES)}")
        if learn_sigma:
            raise ValueError("the continuous-time diffusion has a fixed variance: learn_sigma must be False")
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)
        self.prediction = check_prediction(prediction)
        self.loss_type = loss
        self.learn_sigma = False
        self.timestep_sampling = check_timestep_sampling(timestep_sampling)

    def __repr__(self) -> str:
        return (
            f"VDMDiffusion(logsnr=[{self.logsnr_min}, {self.logsnr_max}], prediction={self.prediction!r}, "
            f"loss={self.loss_type!r})"
        )

    def to(self, device: torch.device | str) -> VDMDiffusion:
        """Nothing to move (the schedule is a formula); returns ``self``."""
        return self

    # ------------------------------------------------------------------ schedule

    def logsnr(self, t: torch.Tensor) -> torch.Tensor:
        """``lambda(t)``: ``t`` any shape in ``[0, 1]`` -> float64 of the same shape."""
        return cosine_logsnr(t, self.logsnr_min, self.logsnr_max)

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)``, float64 shaped like ``t``: ``sqrt(sigmoid(+-lambda_t))``."""
        logsnr = self.logsnr(t)
        return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()

    def sample_timesteps(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(batch_size,)`` float64 training times, each ``t ~ U[0, 1)``, drawn on the generator's device:
        independent (``timestep_sampling="uniform"``) or one per ``1 / B`` stratum (``"low_discrepancy"``)."""
        source = generator.device if generator is not None else (device or "cpu")
        t = unit_times(batch_size, self.timestep_sampling, generator, source)
        return t if device is None else t.to(device)

    def noise_levels(self, steps: int | str) -> NoiseLevels:
        """The uniform grid ``t_k = 1 - k / N`` (``k = 0..N-1``), then the clean data."""
        if isinstance(steps, str):
            if not steps.strip().isdigit():
                raise ValueError(
                    f"the continuous-time diffusion takes an integer number of steps, got {steps!r}"
                )
            steps = int(steps)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        t = 1.0 - torch.arange(steps, dtype=torch.float64) / steps
        return NoiseLevels.from_logsnr(self.logsnr(t))

    # ------------------------------------------------------------------ forward process and loss

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``z_t = alpha_t x0 + sigma_t noise``: ``x0``, ``noise`` ``(B, ...)``, ``t`` ``(B,)``."""
        alpha, sigma = self._scales(t, x0)
        return alpha * x0 + sigma * noise

    def model_times(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-SNR ``lambda_t`` in ``like``'s float dtype and device: what the model is called with."""
        dtype = like.dtype if like.is_floating_point() else torch.float32
        return self.logsnr(t).to(device=like.device, dtype=dtype)

    def training_losses(
        self, model_fn: ModelFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses at times ``t``.

        Args:
            model_fn: ``model_fn(z_t, lambda_t) -> prediction`` with ``lambda_t`` ``(B,)`` float.
            x0: ``(B, C, ...)`` clean data.
            t: ``(B,)`` times in ``[0, 1]``.
            noise: ``(B, C, ...)`` the noise forming ``z_t`` (drawn if ``None``).

        Returns:
            ``{"mse", "loss"}``, each ``(B,)``: the mean over non-batch dims of the squared error between the
            prediction and its target (eps, v or x0); ``loss`` is ``mse``.
        """
        if noise is None:
            noise = torch.randn_like(x0)
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        z_t = self.q_sample(x0, t, noise)
        output = model_fn(z_t, self.model_times(t, x0))
        if output.shape != x0.shape:
            raise ValueError(
                f"model output shape {tuple(output.shape)} != x0 shape {tuple(x0.shape)} (the continuous-time "
                "diffusion has no learned variance: the model must output C channels)"
            )
        alpha, sigma = self._scales(t, x0)
        target = prediction_target(self.prediction, x0, noise, alpha, sigma)
        mse = mean_flat((target - output) ** 2)
        return {"mse": mse, "loss": mse}

    def _scales(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha_t, sigma_t)`` shaped ``(B, 1, ..., 1)`` in ``like``'s dtype and device."""
        alpha, sigma = self.alpha_sigma(t.detach().to(torch.float64))
        shape = (-1, *([1] * (like.dim() - 1)))
        return (
            alpha.to(device=like.device, dtype=like.dtype).reshape(shape),
            sigma.to(device=like.device, dtype=like.dtype).reshape(shape),
        )


def build_vdm_diffusion(
    schedule: str = "cosine_logsnr",
    logsnr_min: float = -20.0,
    logsnr_max: float = 20.0,
    prediction: str = "eps",
    learn_sigma: bool = False,
    loss: str = "mse",
    timestep_sampling: str = "uniform",
) -> VDMDiffusion:
    """The ``diffusion=vdm`` builder (the config node's keys are the arguments)."""
    if schedule not in LOGSNR_SCHEDULES:
        raise ValueError(f"unknown log-SNR schedule {schedule!r}; allowed: {', '.join(LOGSNR_SCHEDULES)}")
    return VDMDiffusion(
        logsnr_min,
        logsnr_max,
        prediction=prediction,
        loss=loss,
        learn_sigma=learn_sigma,
        timestep_sampling=timestep_sampling,
    )
