"""Samplers written once over :class:`~vidgen.diffusion.levels.NoiseLevels`, so that they run on every
diffusion (a discrete chain's respaced levels or the continuous-time uniform ``t`` grid) and accept
conditioning :class:`~vidgen.diffusion.reconstruction.Guide` terms.

* :class:`GammaAncestralSampler` (``sampler=vdm_ancestral``): VDM's ancestral step
  ``z_s = mu~_{s|t}(z_t, x^) + sqrt((sigma~^2_{s|t})^(1 - gamma) (sigma^2_{t|s})^gamma) xi``; ``gamma = 0``
  is DDPM's posterior ("fixed small") variance, ``gamma = 1`` the forward variance. Optional Langevin
  corrector after each step: ``z_s <- z_s - (delta / 2) sigma_s eps^(z_s) + sqrt(delta) sigma_s xi'``.
* :class:`LevelDDIMSampler`: DDIM, ``z_s = alpha_s x^ + sqrt(sigma_s^2 - c^2) eps^ + c xi`` with
  ``c^2 = eta^2 sigma~^2_{s|t}``.

``model_fn(z, time) -> raw output`` is called with the levels' model times (int64 steps or float log-SNR);
with a learned variance (``2C`` output channels) the first ``C`` are the prediction. The last step returns
the (guided) data prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vidgen.diffusion.levels import NoiseLevels, StepCoefficients
from vidgen.diffusion.parameterization import check_prediction, eps_from_x0, prediction_to_x0_eps
from vidgen.diffusion.reconstruction import Guide
from vidgen.diffusion.samplers import ModelFn, Sampler, _randn, _steps_bar

__all__ = ["GammaAncestralSampler", "LevelDDIMSampler", "LevelSampler"]


class LevelSampler(Sampler):
    """The loop shared by the level samplers: replacement, model call, guidance, step, corrector.

    Args:
        levels: the sampling grid (``diffusion.noise_levels(steps)``).
        prediction: the model's parameterisation, ``"eps"``, ``"v"`` or ``"x0"``.
        learn_sigma: the model outputs ``2C`` channels (the variance half is not used).
        clip_x0: clamp the (guided) data prediction to ``[-1, 1]``.
        langevin_steps_per_step: Langevin corrector steps after each step (not after the last).
        langevin_delta: the corrector's ``delta``.
    """

    name = "levels"

    def __init__(
        self,
        levels: NoiseLevels,
        prediction: str,
        learn_sigma: bool = False,
        clip_x0: bool = False,
        langevin_steps_per_step: int = 0,
        langevin_delta: float = 0.1,
    ) -> None:
        if langevin_steps_per_step < 0:
            raise ValueError(f"langevin_steps_per_step must be >= 0, got {langevin_steps_per_step}")
        if langevin_delta <= 0:
            raise ValueError(f"langevin_delta must be > 0, got {langevin_delta}")
        self.levels = levels
        self.prediction = check_prediction(prediction)
        self.learn_sigma = bool(learn_sigma)
        self.clip_x0 = bool(clip_x0)
        self.langevin_steps_per_step = int(langevin_steps_per_step)
        self.langevin_delta = float(langevin_delta)

    # ------------------------------------------------------------------ public entry

    @torch.no_grad()
    def sample(
        self,
        model_fn: ModelFn,
        shape: Sequence[int],
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        progress: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        guides: Sequence[Guide] = (),
    ) -> torch.Tensor:
        """Draw samples ``(B, C, ...)``; ``guides`` condition them (see :mod:`vidgen.diffusion.reconstruction`).

        Arguments as :meth:`Sampler.sample`. The random draws, in order: the start noise (unless given); then
        per model evaluation the guides' replacement noise, and after it the step's (or corrector step's)
        injected noise.
        """
        shape = tuple(shape)
        if noise is None:
            if device is None:
                device = generator.device if generator is not None else "cpu"
            noise = _randn(shape, generator, device, dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != requested shape {shape}")
        return self._loop(model_fn, noise, generator, progress, tuple(guides))

    def _run(
        self, model_fn: ModelFn, x: torch.Tensor, generator: torch.Generator | None, progress: bool
    ) -> torch.Tensor:
        return self._loop(model_fn, x, generator, progress, ())

    # ------------------------------------------------------------------ the loop

    def _loop(
        self,
        model_fn: ModelFn,
        z: torch.Tensor,
        generator: torch.Generator | None,
        progress: bool,
        guides: tuple[Guide, ...],
    ) -> torch.Tensor:
        """Walk the levels from ``z`` ``(B, C, ...)`` at level 0; returns the final data prediction."""
        levels = self.levels
        for k in _steps_bar(range(len(levels)), len(levels), progress, self.name):
            coef = levels.step(k)
            z, x_hat, eps_hat = self._denoise(model_fn, z, k, coef.alpha_t, coef.sigma_t, guides, generator)
            if coef.final:
                for guide in guides:
                    x_hat = guide.finish(x_hat)
                return x_hat
            z = self._step(coef, z, x_hat, eps_hat, generator)
            for _ in range(self.langevin_steps_per_step):
                z = self._langevin(model_fn, z, k + 1, coef, guides, generator)
        raise AssertionError("unreachable: the last level is the clean data")

    def _denoise(
        self,
        model_fn: ModelFn,
        z: torch.Tensor,
        level: int,
        alpha: float,
        sigma: float,
        guides: Sequence[Guide],
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Replace the given parts of ``z`` at ``level``, evaluate the model, apply the guides.

        Returns:
            ``(z, x~, eps~)``, each ``(B, C, ...)``: ``z`` after replacement, the (guided, optionally clipped)
            data prediction and the noise prediction consistent with both.
        """
        for guide in guides:
            z = guide.replace(z, alpha, sigma, generator)
        time = self.levels.time(level, z.shape[0], z.device, z.dtype)
        graded = [guide for guide in guides if guide.gradient]
        if not graded:
            x_hat, eps_hat = self._predict(model_fn(z, time), z, alpha, sigma)
        else:
            # reconstruction guidance: one forward pass with the graph back to z, one VJP per guide; outside
            # any inference mode of the caller (its tensors are cloned into ordinary ones)
            with torch.inference_mode(False), torch.enable_grad():
                leaf = z.clone().requires_grad_(True)
                x_hat, eps_hat = self._predict(model_fn(leaf, time.clone()), leaf, alpha, sigma)
                steps = [
                    guide.correction(x_hat, leaf, alpha, retain_graph=i < len(graded) - 1)
                    for i, guide in enumerate(graded)
                ]
            x_hat, eps_hat = x_hat.detach(), eps_hat.detach()
            for step in steps:
                # x~ = x^ - step, and eps~ = (z - alpha x~) / sigma = eps^ + (alpha / sigma) step: with a zero
                # step both stay bit for bit the unguided ones
                x_hat = x_hat - step
                eps_hat = eps_hat + (alpha / sigma) * step
        if self.clip_x0:
            x_hat = x_hat.clamp(-1.0, 1.0)
            eps_hat = eps_from_x0(z, x_hat, alpha, sigma)
        return z, x_hat, eps_hat

    def _predict(
        self, output: torch.Tensor, z: torch.Tensor, alpha: float, sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x^, eps^)`` from the raw output ``(B, C or 2C, ...)`` at ``z`` ``(B, C, ...)``."""
        channels = z.shape[1]
        expected = 2 * channels if self.learn_sigma else channels
        if output.shape[0] != z.shape[0] or output.shape[1] != expected or output.shape[2:] != z.shape[2:]:
            raise ValueError(
                f"model output shape {tuple(output.shape)} does not match z {tuple(z.shape)} "
                f"(expected {expected} channels, learn_sigma={self.learn_sigma})"
            )
        return prediction_to_x0_eps(output[:, :channels], z, self.prediction, alpha, sigma)

    def _langevin(
        self,
        model_fn: ModelFn,
        z: torch.Tensor,
        level: int,
        coef: StepCoefficients,
        guides: Sequence[Guide],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One corrector step at ``level`` (``alpha_s``, ``sigma_s`` of ``coef``):
        ``z - (delta / 2) sigma_s eps~ + sqrt(delta) sigma_s xi``, ``eps~`` from the guided prediction."""
        alpha, sigma = coef.alpha_s, coef.sigma_s
        z, _, eps_hat = self._denoise(model_fn, z, level, alpha, sigma, guides, generator)
        xi = _randn(z.shape, generator, z.device, z.dtype)
        delta = self.langevin_delta
        return z - (0.5 * delta * sigma) * eps_hat + (math.sqrt(delta) * sigma) * xi

    def _step(
        self,
        coef: StepCoefficients,
        z: torch.Tensor,
        x_hat: torch.Tensor,
        eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One step from level ``t`` to a noisy level ``s`` (``coef`` not final)."""
        raise NotImplementedError


class GammaAncestralSampler(LevelSampler):
    """VDM's gamma-interpolated ancestral sampler (+ Langevin predictor-corrector), on any diffusion.

    Args:
        levels, prediction, learn_sigma, clip_x0, langevin_steps_per_step, langevin_delta: see
            :class:`LevelSampler`.
        gamma: log-variance interpolation between the posterior (0) and the forward (1) variance.
    """

    name = "VDM ancestral"

    def __init__(
        self,
        levels: NoiseLevels,
        prediction: str,
        learn_sigma: bool = False,
        clip_x0: bool = False,
        gamma: float = 0.0,
        langevin_steps_per_step: int = 0,
        langevin_delta: float = 0.1,
    ) -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
        super().__init__(levels, prediction, learn_sigma, clip_x0, langevin_steps_per_step, langevin_delta)
        self.gamma = float(gamma)

    def variance(self, coef: StepCoefficients) -> float:
        """``(sigma~^2_{s|t})^(1 - gamma) (sigma^2_{t|s})^gamma`` of one step."""
        if self.gamma == 0.0:
            return coef.var_posterior
        if self.gamma == 1.0:
            return coef.var_forward
        return math.exp(
            (1.0 - self.gamma) * math.log(coef.var_posterior) + self.gamma * math.log(coef.var_forward)
        )

    def _step(
        self,
        coef: StepCoefficients,
        z: torch.Tensor,
        x_hat: torch.Tensor,
        eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``mean_z z + mean_x x~ + sqrt(variance) xi``."""
        mean = coef.mean_z * z + coef.mean_x * x_hat
        return mean + math.sqrt(self.variance(coef)) * _randn(z.shape, generator, z.device, z.dtype)


class LevelDDIMSampler(LevelSampler):
    """DDIM on any diffusion's levels (and with guides); ``eta = 1`` is the ``gamma = 0`` ancestral step.

    Args:
        levels, prediction, learn_sigma, clip_x0: see :class:`LevelSampler`.
        eta: scale of the injected noise, ``c = eta * sqrt(sigma~^2_{s|t})``.
    """

    name = "DDIM"

    def __init__(
        self,
        levels: NoiseLevels,
        prediction: str,
        learn_sigma: bool = False,
        clip_x0: bool = False,
        eta: float = 0.0,
    ) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        super().__init__(levels, prediction, learn_sigma, clip_x0)
        self.eta = float(eta)

    def _step(
        self,
        coef: StepCoefficients,
        z: torch.Tensor,
        x_hat: torch.Tensor,
        eps_hat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``alpha_s x~ + sqrt(sigma_s^2 - c^2) eps~ (+ c xi when eta > 0)``."""
        c2 = self.eta**2 * coef.var_posterior
        z = coef.alpha_s * x_hat + math.sqrt(max(coef.sigma_s**2 - c2, 0.0)) * eps_hat
        if self.eta > 0:
            z = z + math.sqrt(c2) * _randn(z.shape, generator, z.device, z.dtype)
        return z
