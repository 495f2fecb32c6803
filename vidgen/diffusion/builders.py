"""Config-facing builders for a diffusion process and a sampler."""

from __future__ import annotations

from vidgen.diffusion.gaussian import GaussianDiffusion
from vidgen.diffusion.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, Sampler
from vidgen.diffusion.schedules import make_beta_schedule

SAMPLERS = ("ddpm", "ddim", "dpmsolver")
_DEFAULT_STEPS = {"ddpm": 250, "ddim": 50, "dpmsolver": 20}


def build_diffusion(
    schedule: str = "linear",
    num_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    prediction: str = "eps",
    learn_sigma: bool = True,
    loss: str = "hybrid",
) -> GaussianDiffusion:
    """A :class:`GaussianDiffusion` over ``make_beta_schedule(schedule, num_timesteps, beta_start, beta_end)``.

    Defaults are DiT / Latte's: linear betas over 1000 steps, eps prediction, learned variance, hybrid loss.
    """
    betas = make_beta_schedule(schedule, num_timesteps, beta_start=beta_start, beta_end=beta_end)
    return GaussianDiffusion(betas, prediction=prediction, learn_sigma=learn_sigma, loss=loss)


def build_sampler(
    diffusion: GaussianDiffusion,
    name: str = "ddpm",
    steps: int | str | None = None,
    eta: float = 0.0,
    order: int = 2,
    clip_x0: bool = False,
) -> Sampler:
    """A sampler for ``diffusion`` by name.

    Args:
        diffusion: the training diffusion.
        name: ``"ddpm"``, ``"ddim"`` or ``"dpmsolver"``.
        steps: number of steps (default 250 / 50 / 20 respectively); DDPM and DDIM also accept a
            ``space_timesteps`` spacing string such as ``"ddim50"``.
        eta: DDIM noise scale (DDIM only).
        order: DPM-Solver++ order, 1 or 2 (DPM-Solver++ only).
        clip_x0: clamp predicted ``x0`` to ``[-1, 1]``.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    if steps is None:
        steps = _DEFAULT_STEPS[name]
    if name == "ddpm":
        return DDPMSampler(diffusion, steps=steps, clip_x0=clip_x0)
    if name == "ddim":
        return DDIMSampler(diffusion, steps=steps, eta=eta, clip_x0=clip_x0)
    if not isinstance(steps, int):
        raise ValueError(f"dpmsolver needs an integer number of steps, got {steps!r}")
    return DPMSolverSampler(diffusion, steps=steps, order=order, clip_x0=clip_x0)
