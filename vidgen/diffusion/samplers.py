"""Samplers sharing one interface: ``sample(model_fn, shape, *, noise, generator, progress) -> x0``.

``model_fn(x, t_original) -> raw model output``: ``x`` ``(B, C, ...)``, ``t_original`` ``(B,)`` int64 timesteps
of the original chain; the output has ``2C`` channels on dim 1 when the diffusion learns the variance
(samplers that do not use the variance take the first ``C``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from vidgen.diffusion.coefficients import gather
from vidgen.diffusion.gaussian import GaussianDiffusion, ModelFn
from vidgen.diffusion.parameterization import prediction_to_x0_eps
from vidgen.diffusion.respace import respace, space_timesteps


def _randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (a CPU generator works for CUDA samples too),
    then moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype).to(device)


class Sampler(ABC):
    """Base class: draws ``x_T`` and runs a reverse process with a model."""

    @abstractmethod
    def _run(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        generator: torch.Generator | None,
        progress: bool,
    ) -> torch.Tensor:
        """Run the reverse process from ``x_T`` ``(B, C, ...)``; returns ``(B, C, ...)`` samples."""

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
    ) -> torch.Tensor:
        """Draw samples.

        Args:
            model_fn: ``model_fn(x, t_original) -> raw output`` (see module docstring).
            shape: ``(B, C, ...)`` of the samples.
            noise: ``(B, C, ...)`` start noise ``x_T``; drawn from ``generator`` if ``None``.
            generator: makes the start noise and every injected noise reproducible.
            progress: show a tqdm progress bar.
            device: where to sample when ``noise`` is ``None`` (default: the generator's device, else CPU).
            dtype: dtype when ``noise`` is ``None``.

        Returns:
            ``(B, C, ...)`` samples (runs under ``torch.no_grad``).
        """
        shape = tuple(shape)
        if noise is None:
            if device is None:
                device = generator.device if generator is not None else "cpu"
            noise = _randn(shape, generator, device, dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} != requested shape {shape}")
        return self._run(model_fn, noise, generator, progress)


def _steps_bar(steps: Iterable[int], total: int, progress: bool, name: str) -> Iterable[int]:
    """Wrap ``steps`` in a tqdm bar when ``progress`` is set."""
    if not progress:
        return steps
    from tqdm.auto import tqdm  # only needed for progress bars

    return tqdm(steps, total=total, desc=name, leave=False)


def _respaced(diffusion: GaussianDiffusion, steps: int | str) -> GaussianDiffusion:
    """``diffusion`` respaced to ``steps`` (an int count or a ``space_timesteps`` spacing string)."""
    if isinstance(steps, int) and steps == diffusion.num_timesteps:
        return diffusion
    return respace(diffusion, space_timesteps(diffusion.num_timesteps, steps))


def _full_t(index: int, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 tensor filled with ``index`` on ``x``'s device."""
    return torch.full((x.shape[0],), index, dtype=torch.int64, device=x.device)


class RespacedSampler(Sampler):
    """Base class of the samplers that walk a respaced chain: one loop for all of them.

    The loop runs from the chain's last index down to ``0``, calls the model once per index and hands its
    output to :meth:`_step`, which is all a subclass defines.

    Args:
        diffusion: the training diffusion.
        steps: number of steps (int) or a ``space_timesteps`` spacing string such as ``"ddim50"``.
        clip_x0: clamp predicted ``x0`` to ``[-1, 1]`` at every step.
    """

    name = "respaced"
    """Label of the progress bar."""

    def __init__(self, diffusion: GaussianDiffusion, steps: int | str, clip_x0: bool = False) -> None:
        self.chain = _respaced(diffusion, steps)
        self.clip_x0 = clip_x0

    @abstractmethod
    def _step(
        self,
        chain: GaussianDiffusion,
        model_output: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        final: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One reverse step of ``chain`` (already on ``x``'s device) from ``x_t`` to ``x_{t-1}``.

        Args:
            chain: the respaced chain.
            model_output: ``(B, C or 2C, ...)`` raw model output at ``(x, t)``.
            x: ``(B, C, ...)`` current sample ``x_t``.
            t: ``(B,)`` int64 index of this chain (the same for every sample).
            final: ``t`` is ``0``, the last step (which returns the sample).
            generator: source of any injected noise.

        Returns:
            ``(B, C, ...)`` sample at the previous index (the final sample when ``final``).
        """

    def _run(
        self, model_fn: ModelFn, x: torch.Tensor, generator: torch.Generator | None, progress: bool
    ) -> torch.Tensor:
        chain = self.chain.to(x.device)  # coefficient tables next to the samples (no per-step copies)
        model = chain.wrap_model(model_fn)
        for i in _steps_bar(reversed(range(chain.num_timesteps)), chain.num_timesteps, progress, self.name):
            t = _full_t(i, x)
            x = self._step(chain, model(x, t), x, t, i == 0, generator)
        return x


class DDPMSampler(RespacedSampler):
    """Ancestral sampling (Ho et al.) on a respaced chain, with fixed-small or learned variance.

    Args:
        diffusion: the training diffusion.
        steps: number of steps (int) or a ``space_timesteps`` spacing string such as ``"ddim50"``.
        clip_x0: clamp predicted ``x0`` to ``[-1, 1]`` at every step.
    """

    name = "DDPM"

    def __init__(self, diffusion: GaussianDiffusion, steps: int | str = 250, clip_x0: bool = False) -> None:
        super().__init__(diffusion, steps, clip_x0)

    def _step(
        self,
        chain: GaussianDiffusion,
        model_output: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        final: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``x_{t-1} = mean + exp(log_variance / 2) * z`` of the model posterior; the mean alone at ``t = 0``."""
        out = chain.p_mean_variance(model_output, x, t, clip_x0=self.clip_x0)
        if final:
            return out["mean"]
        z = _randn(x.shape, generator, x.device, x.dtype)
        return out["mean"] + torch.exp(0.5 * out["log_variance"]) * z


class DDIMSampler(RespacedSampler):
    """DDIM (Song et al.) on a respaced chain; ``eta=0`` is deterministic, ``eta=1`` matches DDPM's
    fixed-small ancestral step.

    Args:
        diffusion: the training diffusion.
        steps: number of steps (int) or a ``space_timesteps`` spacing string such as ``"ddim50"``.
        eta: scale of the injected noise, ``sigma_t = eta * sqrt((1 - ab_prev) / (1 - ab)) *
            sqrt(1 - ab / ab_prev)``.
        clip_x0: clamp predicted ``x0`` to ``[-1, 1]`` at every step.
    """

    name = "DDIM"

    def __init__(
        self, diffusion: GaussianDiffusion, steps: int | str = 50, eta: float = 0.0, clip_x0: bool = False
    ) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        super().__init__(diffusion, steps, clip_x0)
        self.eta = float(eta)

    def _step(
        self,
        chain: GaussianDiffusion,
        model_output: torch.Tensor,
        x: torch.Tensor,
        t: torch.Tensor,
        final: bool,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """``x_{t-1} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps (+ sigma z unless final or eta = 0)``."""
        prediction, _ = chain.split_output(model_output, x)
        pred_x0, pred_eps = chain.predict_x0_eps(prediction, x, t, clip_x0=self.clip_x0)
        ab = gather(chain.alphas_cumprod, t, x)
        ab_prev = gather(chain.alphas_cumprod_prev, t, x)
        sigma = self.eta * torch.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        direction = torch.sqrt((1.0 - ab_prev - sigma**2).clamp(min=0.0)) * pred_eps
        x = torch.sqrt(ab_prev) * pred_x0 + direction
        if not final and self.eta > 0:
            x = x + sigma * _randn(x.shape, generator, x.device, x.dtype)
        return x


DPM_SOLVER_SPACINGS = ("logsnr", "diffusers")


def dpm_solver_grid(
    diffusion: GaussianDiffusion, steps: int, spacing: str = "logsnr", lambda_min: float = -5.1
) -> torch.Tensor:
    """``(steps,)`` strictly decreasing indices of ``diffusion``'s chain where DPM-Solver++ evaluates the model.

    * ``"logsnr"``: uniform in ``lambda = log(alpha / sigma)`` from the top index to index ``0`` (both
      included), each point rounded to the chain index of nearest ``lambda``; collisions at the low-noise end
      and, for the cosine schedule, at the very top (where consecutive indices are far apart in ``lambda``)
      are resolved by moving to the neighbouring free index. The top index is ``T-1``, or, when
      ``lambda(T-1) < lambda_min``, the last index with ``lambda >= lambda_min`` (like diffusers'
      ``lambda_min_clipped``; it only affects schedules such as cosine whose final steps have ``alpha_bar``
      far below 1e-4, i.e. are pure noise anyway).
    * ``"diffusers"``: ``round(linspace(0, T-1, steps+1))[::-1][:-1]``, the default ("linspace") grid of
      diffusers' ``DPMSolverMultistepScheduler``; it stops at about ``T / steps`` and relies on the final
      jump to ``sigma = 0``.
    """
    if spacing not in DPM_SOLVER_SPACINGS:
        raise ValueError(f"unknown DPM-Solver spacing {spacing!r}; allowed: {', '.join(DPM_SOLVER_SPACINGS)}")
    last = diffusion.num_timesteps - 1
    if not 1 <= steps <= diffusion.num_timesteps:
        raise ValueError(f"steps must be in [1, {diffusion.num_timesteps}], got {steps}")
    if steps == 1:
        return torch.tensor([last], dtype=torch.int64)
    if spacing == "diffusers":
        grid = torch.from_numpy(np.linspace(0, last, steps + 1).round()[::-1][:-1].astype(np.int64))
        if bool((grid[1:] >= grid[:-1]).any()):
            raise ValueError(
                f"the diffusers grid repeats timesteps for {steps} of {diffusion.num_timesteps} steps"
            )
        return grid
    alpha_bar = diffusion.alphas_cumprod.cpu()
    lambdas = 0.5 * (torch.log(alpha_bar) - torch.log1p(-alpha_bar))  # decreasing along the chain
    last = max(int((lambdas >= lambda_min).sum().item()) - 1, steps - 1, 0)
    lambdas = lambdas[: last + 1]
    targets = torch.linspace(lambdas[last].item(), lambdas[0].item(), steps, dtype=torch.float64)
    # Nearest index: searchsorted on the increasing reversed table, then compare both neighbours.
    reversed_lambdas = lambdas.flip(0)
    upper = torch.searchsorted(reversed_lambdas, targets).clamp(1, last)
    lower = upper - 1
    nearer_lower = (targets - reversed_lambdas[lower]).abs() <= (reversed_lambdas[upper] - targets).abs()
    indices = (last - torch.where(nearer_lower, lower, upper)).tolist()
    # Make the indices strictly decreasing from the top index to 0: push collisions down from the top, then up from the
    # bottom; with steps <= T the result stays inside [0, T-1].
    indices[0], indices[-1] = last, 0
    for k in range(1, steps):
        indices[k] = min(indices[k], indices[k - 1] - 1)
    indices[-1] = 0
    for k in range(steps - 2, -1, -1):
        indices[k] = max(indices[k], indices[k + 1] + 1)
    return torch.tensor(indices, dtype=torch.int64)


class DPMSolverSampler(Sampler):
    """DPM-Solver++ (Lu et al. 2022), multistep, data prediction, order 1 or 2 ("2M").

    Works in log-SNR ``lambda = log(alpha / sigma)`` with ``alpha = sqrt(ab)``, ``sigma = sqrt(1 - ab)``. The
    model is evaluated at the ``steps`` chain indices of :func:`dpm_solver_grid`; ``steps - 1`` solver
    updates move ``x`` between them and the data prediction at the last one is returned, which is the exact
    first-order update to ``sigma = 0``. An update from ``s`` to ``t`` with ``h = lambda_t - lambda_s`` is::

        x_t = (sigma_t / sigma_s) * x_s - alpha_t * expm1(-h) * D,
        D = d_s                                 (first order; always for the first update)
        D = d_s + (d_s - d_prev) / (2 r),       r = (lambda_s - lambda_prev) / h   (second order)

    where ``d`` are data (``x0``) predictions obtained from eps / v / x0 models. Every update but the first
    (no previous prediction yet) and the final jump to ``sigma = 0`` is of the requested order, for any number
    of steps.

    This is exactly what diffusers' ``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
    solver_order=2)`` does with its defaults (``final_sigmas_type="zero"``, ``lower_order_final=True``,
    ``euler_at_final=False``), with ``spacing="diffusers"`` on its default ("linspace") grid and with
    ``spacing="logsnr"`` when given this sampler's :attr:`timesteps`: its final step to ``sigma = 0`` is
    always first order, and its ``lower_order_final`` (below 15 steps) lowers only that final step for
    order 2 (the second-to-last step is lowered for order 3 only), so it changes nothing here. diffusers'
    ``final_sigmas_type="sigma_min"`` (stop at the first training sigma) is not offered.

    Args:
        diffusion: the training diffusion.
        steps: number of model evaluations (``1 <= steps <= T``; 1 is a single denoising jump from ``T-1``).
        order: 1 (equivalent to DDIM with ``eta=0`` on the same timesteps) or 2.
        spacing: ``"logsnr"`` (default) or ``"diffusers"``, see :func:`dpm_solver_grid`.
        lambda_min: lowest log-SNR of the ``"logsnr"`` grid, see :func:`dpm_solver_grid`.
        clip_x0: clamp the data predictions to ``[-1, 1]``.
    """

    def __init__(
        self,
        diffusion: GaussianDiffusion,
        steps: int = 20,
        order: int = 2,
        spacing: str = "logsnr",
        lambda_min: float = -5.1,
        clip_x0: bool = False,
    ) -> None:
        if order not in (1, 2):
            raise ValueError(f"DPM-Solver++ order must be 1 or 2, got {order}")
        self.diffusion = diffusion
        self.order = order
        self.clip_x0 = clip_x0
        self.indices = dpm_solver_grid(diffusion, steps, spacing, lambda_min)
        """``(steps,)`` descending indices of the diffusion's chain where the model is evaluated."""

    @property
    def timesteps(self) -> torch.Tensor:
        """``(steps,)`` original-chain timesteps passed to the model, in sampling order."""
        return self.diffusion.timestep_map.cpu()[self.indices]

    def _run(
        self, model_fn: ModelFn, x: torch.Tensor, generator: torch.Generator | None, progress: bool
    ) -> torch.Tensor:
        diffusion = self.diffusion
        alpha_bar = diffusion.alphas_cumprod.cpu()[self.indices]
        alphas, sigmas = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        lambdas = torch.log(alphas) - torch.log(sigmas)
        model = diffusion.wrap_model(model_fn)
        num_steps = len(self.indices)

        prev_x0: torch.Tensor | None = None
        for k in _steps_bar(range(num_steps), num_steps, progress, "DPM-Solver++"):
            t = _full_t(int(self.indices[k]), x)
            prediction, _ = diffusion.split_output(model(x, t), x)
            a_s = alphas[k].to(dtype=x.dtype, device=x.device)
            s_s = sigmas[k].to(dtype=x.dtype, device=x.device)
            pred_x0, _ = prediction_to_x0_eps(prediction, x, diffusion.prediction, a_s, s_s)
            if self.clip_x0:
                pred_x0 = pred_x0.clamp(-1.0, 1.0)
            if k == num_steps - 1:
                return pred_x0  # first-order update to sigma = 0 (lambda = inf): x = D = d_s

            h = (lambdas[k + 1] - lambdas[k]).item()
            if self.order == 1 or prev_x0 is None:
                data = pred_x0
            else:
                r = (lambdas[k] - lambdas[k - 1]).item() / h
                data = pred_x0 + (pred_x0 - prev_x0) / (2.0 * r)
            sigma_ratio = (sigmas[k + 1] / sigmas[k]).item()
            data_coef = (alphas[k + 1] * torch.expm1(torch.tensor(-h, dtype=torch.float64))).item()
            x = sigma_ratio * x - data_coef * data
            prev_x0 = pred_x0
        raise AssertionError("unreachable: the loop returns at its last step")
