"""The discrete Gaussian diffusion process: forward noising, posterior, model posterior and training losses."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vidgen.diffusion.coefficients import gather
from vidgen.diffusion.levels import NoiseLevels
from vidgen.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from vidgen.diffusion.parameterization import (
    check_prediction,
    eps_from_x0,
    min_snr_weight,
    prediction_target,
    prediction_to_x0_eps,
)
from vidgen.diffusion.spacing import space_timesteps
from vidgen.diffusion.timestep_sampling import check_timestep_sampling, unit_times

LOSS_TYPES = ("simple", "hybrid")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model_fn(x_t, t) -> model_output``: ``x_t`` ``(B, C, ...)``, ``t`` ``(B,)`` int64 timesteps of the original
chain; output ``(B, C, ...)`` or ``(B, 2C, ...)`` when the variance is learned."""

_TABLES = (
    "betas",
    "log_betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "timestep_map",
)


class GaussianDiffusion:
    """A discrete Gaussian diffusion chain of ``T`` steps with its coefficient tables (float64).

    Args:
        betas: ``(T,)`` noise schedule, each in ``(0, 1]``.
        prediction: what the model predicts: ``"eps"``, ``"v"`` or ``"x0"``.
        learn_sigma: the model also outputs ``C`` variance-interpolation channels in ``[-1, 1]``
            (improved DDPM), so its output has ``2C`` channels on dim 1. Needs ``loss="hybrid"``, the only
            loss that trains those channels.
        loss: ``"simple"`` (MSE of the prediction; only with ``learn_sigma=False``) or ``"hybrid"`` (MSE +
            variational bound; needs ``learn_sigma``).
        min_snr_gamma: weight the MSE term of the loss by Min-SNR-gamma (:func:`min_snr_weight`; Hang et al.
            use 5); ``None``: unweighted, as DDPM / DiT / Latte train.
        timestep_map: ``(T,)`` int64, the original-chain timestep of each step of this chain (set by
            respacing; identity by default). Models are always called with the mapped timesteps.
        timestep_sampling: how :meth:`sample_timesteps` draws a training batch's steps: ``"uniform"``
            (independent, as DDPM / DiT / Latte) or ``"low_discrepancy"`` (one step in each ``T / B`` stratum;
            :mod:`vidgen.diffusion.timestep_sampling`).

    Every method's ``t`` is a ``(B,)`` int64 index into *this* chain.
    """

    model_time = "step"
    """The denoiser's ``t`` argument is an int64 step of the original chain."""

    def __init__(
        self,
        betas: torch.Tensor | Sequence[float],
        prediction: str = "eps",
        learn_sigma: bool = False,
        loss: str = "simple",
        timestep_map: torch.Tensor | Sequence[int] | None = None,
        min_snr_gamma: float | None = None,
        timestep_sampling: str = "uniform",
    ) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu().clone()
        if betas.dim() != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        self.prediction = check_prediction(prediction)
        if loss not in LOSS_TYPES:
            raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSS_TYPES)}")
        if loss == "hybrid" and not learn_sigma:
            raise ValueError("loss='hybrid' trains the variance and requires learn_sigma=True")
        if loss == "simple" and learn_sigma:
            raise ValueError(
                "learn_sigma=True with loss='simple': the simple loss gives the variance channels no gradient, "
                "so DDPM would sample with an untrained variance; use loss='hybrid' or learn_sigma=False"
            )
        self.learn_sigma = bool(learn_sigma)
        self.loss_type = loss
        if min_snr_gamma is not None and not min_snr_gamma > 0:
            raise ValueError(f"min_snr_gamma must be > 0 or None, got {min_snr_gamma}")
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.timestep_sampling = check_timestep_sampling(timestep_sampling)

        num_timesteps = betas.numel()
        if timestep_map is None:
            timestep_map = torch.arange(num_timesteps, dtype=torch.int64)
        timestep_map = torch.as_tensor(timestep_map).detach().cpu().to(torch.int64).clone()
        if timestep_map.shape != (num_timesteps,):
            raise ValueError(
                f"timestep_map must have shape ({num_timesteps},), got {tuple(timestep_map.shape)}"
            )
        self.timestep_map = timestep_map

        alphas = 1.0 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        self.betas = betas
        self.log_betas = torch.log(betas)
        self.alphas_cumprod = alphas_cumprod
        self.alphas_cumprod_prev = alphas_cumprod_prev
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt()
        self.log_one_minus_alphas_cumprod = torch.log1p(-alphas_cumprod)
        # the per-step weight of the MSE term (depends on t only): Min-SNR-gamma, or None (unweighted)
        self.mse_weights = (
            None
            if self.min_snr_gamma is None
            else min_snr_weight(self.prediction, alphas_cumprod / (1.0 - alphas_cumprod), self.min_snr_gamma)
        )

        # q(x_{t-1} | x_t, x0) = N(coef1 * x0 + coef2 * x_t, posterior_variance)   (Ho et al. eq. 6-7)
        self.posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        # The posterior variance is 0 at t=0; its log is clipped to the t=1 value (improved DDPM).
        first = self.posterior_variance[1:2] if num_timesteps > 1 else betas[:1]
        self.posterior_log_variance_clipped = torch.log(torch.cat([first, self.posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * alphas_cumprod_prev.sqrt() / (1.0 - alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - alphas_cumprod_prev) * alphas.sqrt() / (1.0 - alphas_cumprod)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def num_timesteps(self) -> int:
        """Length ``T`` of this chain."""
        return self.betas.numel()

    def __repr__(self) -> str:
        return (
            f"GaussianDiffusion(T={self.num_timesteps}, prediction={self.prediction!r}, "
            f"learn_sigma={self.learn_sigma}, loss={self.loss_type!r})"
        )

    def to(self, device: torch.device | str) -> GaussianDiffusion:
        """Move every coefficient table (kept in float64) to ``device``, in place; returns ``self``."""
        for name in _TABLES:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def original_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """Map ``(B,)`` indices of this chain to ``(B,)`` int64 original-chain timesteps."""
        return self.timestep_map.to(t.device)[t]

    def wrap_model(self, model_fn: ModelFn) -> ModelFn:
        """Wrap ``model_fn(x, t_original)`` so it can be called with this chain's indices ``t``."""

        def wrapped(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model_fn(x, self.original_timesteps(t))

        return wrapped

    def sample_timesteps(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(batch_size,)`` int64 training timesteps of this chain, each uniform on ``0..T-1``: independent
        (``timestep_sampling="uniform"``, one ``randint``) or one per ``T / B`` stratum (``"low_discrepancy"``)."""
        if device is None:
            device = generator.device if generator is not None else "cpu"
        if self.timestep_sampling == "uniform":
            return torch.randint(0, self.num_timesteps, (batch_size,), device=device, generator=generator)
        unit = unit_times(batch_size, self.timestep_sampling, generator, device)
        return (unit * self.num_timesteps).floor().to(torch.int64).clamp_(max=self.num_timesteps - 1)

    def noise_levels(self, steps: int | str) -> NoiseLevels:
        """The levels of this chain respaced to ``steps`` (an int count or a ``space_timesteps`` spacing such
        as ``"ddim50"``), noisiest first: ``alpha = sqrt(alpha_bar)``, ``sigma = sqrt(1 - alpha_bar)`` and the
        original-chain step as model time, at the same steps as ``respace(self, space_timesteps(T, steps))``."""
        kept = torch.tensor(space_timesteps(self.num_timesteps, steps), dtype=torch.int64).flip(0)
        return NoiseLevels.from_alpha_bar(self.timestep_map.cpu()[kept], self.alphas_cumprod.cpu()[kept])

    # ------------------------------------------------------------------ forward process

    def q_mean_variance(
        self, x0: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and log-variance of ``q(x_t | x0)``.

        Shapes: ``x0`` ``(B, ...)``, ``t`` ``(B,)``. The mean is ``(B, ...)``; variance and log-variance are
        ``(B, 1, ..., 1)``.
        """
        mean = gather(self.sqrt_alphas_cumprod, t, x0) * x0
        variance = gather(1.0 - self.alphas_cumprod, t, x0)
        log_variance = gather(self.log_one_minus_alphas_cumprod, t, x0)
        return mean, variance, log_variance

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Draw ``x_t ~ q(x_t | x0)``: ``sqrt(ab_t) * x0 + sqrt(1 - ab_t) * noise``; shapes ``(B, ...)``."""
        if noise is None:
            noise = torch.randn_like(x0)
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != x0 shape {tuple(x0.shape)}")
        return (
            gather(self.sqrt_alphas_cumprod, t, x0) * x0
            + gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise
        )

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of the posterior ``q(x_{t-1} | x_t, x0)``.

        Shapes: ``x0``, ``x_t`` ``(B, ...)``, ``t`` ``(B,)``. The mean is ``(B, ...)``; variance and
        log-variance are ``(B, 1, ..., 1)``. At ``t = 0`` the variance is 0 and the log-variance is the
        ``t = 1`` value.
        """
        mean = (
            gather(self.posterior_mean_coef1, t, x_t) * x0 + gather(self.posterior_mean_coef2, t, x_t) * x_t
        )
        variance = gather(self.posterior_variance, t, x_t)
        log_variance = gather(self.posterior_log_variance_clipped, t, x_t)
        return mean, variance, log_variance

    # ------------------------------------------------------------------ model posterior

    def split_output(
        self, model_output: torch.Tensor, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Split ``(B, C or 2C, ...)`` model output into the ``(B, C, ...)`` prediction and the
        ``(B, C, ...)`` variance values (``None`` unless ``learn_sigma``)."""
        channels = x_t.shape[1]
        expected = 2 * channels if self.learn_sigma else channels
        if model_output.shape[0] != x_t.shape[0] or model_output.shape[1] != expected:
            raise ValueError(
                f"model output shape {tuple(model_output.shape)} does not match x_t {tuple(x_t.shape)} "
                f"(expected {expected} channels, learn_sigma={self.learn_sigma})"
            )
        if not self.learn_sigma:
            return model_output, None
        return model_output[:, :channels], model_output[:, channels:]

    def predict_x0_eps(
        self, prediction: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_x0: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert the prediction channels ``(B, C, ...)`` at ``x_t`` into ``(pred_x0, pred_eps)``.

        With ``clip_x0`` the data prediction is clamped to ``[-1, 1]`` and ``pred_eps`` is recomputed from
        the clamped ``pred_x0`` so the two stay consistent with ``x_t``.
        """
        a = gather(self.sqrt_alphas_cumprod, t, x_t)
        s = gather(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        pred_x0, pred_eps = prediction_to_x0_eps(prediction, x_t, self.prediction, a, s)
        if clip_x0:
            pred_x0 = pred_x0.clamp(-1.0, 1.0)
            pred_eps = eps_from_x0(x_t, pred_x0, a, s)
        return pred_x0, pred_eps

    def p_mean_variance(
        self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip_x0: bool = False
    ) -> dict[str, torch.Tensor]:
        """The model's reverse step ``p(x_{t-1} | x_t)`` from its raw output.

        Args:
            model_output: ``(B, C, ...)``, or ``(B, 2C, ...)`` with learned variance.
            x_t: ``(B, C, ...)``.
            t: ``(B,)`` indices of this chain.
            clip_x0: clamp the predicted ``x0`` to ``[-1, 1]`` before forming the mean.

        Returns:
            dict with ``mean``, ``variance``, ``log_variance``, ``pred_x0`` and ``pred_eps``, each
            ``(B, C, ...)``. The variance is the fixed posterior variance ("fixed small") unless learned, in
            which case ``log_var = frac * log(beta_t) + (1 - frac) * posterior_log_variance_clipped_t`` with
            ``frac = (v + 1) / 2``.
        """
        prediction, var_values = self.split_output(model_output, x_t)
        if var_values is None:
            variance = gather(self.posterior_variance, t, x_t).expand_as(x_t)
            log_variance = gather(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        else:
            frac = (var_values + 1.0) / 2.0
            max_log = gather(self.log_betas, t, x_t)
            min_log = gather(self.posterior_log_variance_clipped, t, x_t)
            log_variance = frac * max_log + (1.0 - frac) * min_log
            variance = torch.exp(log_variance)
        pred_x0, pred_eps = self.predict_x0_eps(prediction, x_t, t, clip_x0=clip_x0)
        mean, _, _ = self.q_posterior_mean_variance(pred_x0, x_t, t)
        return {
            "mean": mean,
            "variance": variance,
            "log_variance": log_variance,
            "pred_x0": pred_x0,
            "pred_eps": pred_eps,
        }

    # ------------------------------------------------------------------ losses

    def vb_terms_bpd(
        self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Variational-bound term per sample in bits/dim: ``(B,)``.

        ``KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))`` for ``t > 0`` and the discretised decoder NLL
        ``-log p(x0 | x_1)`` at ``t = 0``. ``model_output`` is the raw ``(B, C or 2C, ...)`` output.
        """
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x0, x_t, t)
        out = self.p_mean_variance(model_output, x_t, t, clip_x0=False)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / math.log(
            2.0
        )
        decoder_nll = -mean_flat(
            discretized_gaussian_log_likelihood(x0, means=out["mean"], log_scales=0.5 * out["log_variance"])
        ) / math.log(2.0)
        return torch.where(t == 0, decoder_nll, kl)

    def training_losses(
        self, model_fn: ModelFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-sample training losses at timesteps ``t``.

        Args:
            model_fn: ``model_fn(x_t, t_original) -> output``; called with ``timestep_map[t]``.
            x0: ``(B, C, ...)`` clean data (in ``[-1, 1]`` for the decoder NLL to be meaningful).
            t: ``(B,)`` int64 indices of this chain.
            noise: ``(B, C, ...)`` the noise used to form ``x_t`` (drawn if ``None``).

        Returns:
            dict of ``(B,)`` tensors: ``mse`` (mean over non-batch dims of the squared error between the
            prediction and its target: noise, x0 or v; unweighted), ``vb`` (only with ``learn_sigma``;
            bits/dim, computed with the prediction detached so it trains only the variance) and ``loss``
            (``mse`` for ``"simple"``, ``mse + vb`` for ``"hybrid"``; ``mse`` weighted by Min-SNR-gamma with
            ``min_snr_gamma``).
        """
        if noise is None:
            noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        model_output = self.wrap_model(model_fn)(x_t, t)
        prediction, var_values = self.split_output(model_output, x_t)

        a = gather(self.sqrt_alphas_cumprod, t, x0)
        s = gather(self.sqrt_one_minus_alphas_cumprod, t, x0)
        target = prediction_target(self.prediction, x0, noise, a, s)
        terms = {"mse": mean_flat((target - prediction) ** 2)}
        if var_values is not None:
            frozen = torch.cat([prediction.detach(), var_values], dim=1)
            terms["vb"] = self.vb_terms_bpd(frozen, x0, x_t, t)
        mse = (
            terms["mse"]
            if self.mse_weights is None
            else terms["mse"] * gather(self.mse_weights, t, terms["mse"])
        )
        terms["loss"] = mse + terms["vb"] if self.loss_type == "hybrid" else mse
        return terms
