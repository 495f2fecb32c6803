"""Config-facing builders for a diffusion process and a sampler."""

from __future__ import annotations

from vidgen.diffusion.continuous import VDMDiffusion, build_vdm_diffusion
from vidgen.diffusion.gaussian import GaussianDiffusion
from vidgen.diffusion.guided_samplers import GammaAncestralSampler, LevelDDIMSampler, LevelSampler
from vidgen.diffusion.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, Sampler
from vidgen.diffusion.schedules import make_beta_schedule

__all__ = [
    "GUIDED_SAMPLERS",
    "SAMPLERS",
    "Diffusion",
    "build_diffusion",
    "build_guided_sampler",
    "build_sampler",
    "build_vdm_diffusion",
]

SAMPLERS = ("ddpm", "ddim", "dpmsolver", "vdm_ancestral")
GUIDED_SAMPLERS = ("ddpm", "ddim", "vdm_ancestral")
"""The samplers that take conditioning guides (reconstruction guidance, replacement, super-resolution)."""
_DEFAULT_STEPS = {"ddpm": 250, "ddim": 50, "dpmsolver": 20, "vdm_ancestral": 256}

Diffusion = GaussianDiffusion | VDMDiffusion
"""Either diffusion: a discrete chain or the continuous-time log-SNR diffusion."""


def build_diffusion(
    schedule: str = "linear",
    num_timesteps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    prediction: str = "eps",
    learn_sigma: bool = True,
    loss: str = "hybrid",
    min_snr_gamma: float | None = None,
    timestep_sampling: str = "uniform",
) -> GaussianDiffusion:
    """A :class:`GaussianDiffusion` over ``make_beta_schedule(schedule, num_timesteps, beta_start, beta_end)``.

    Defaults are DiT / Latte's: linear betas over 1000 steps, eps prediction, learned variance, hybrid loss,
    an unweighted MSE (``min_snr_gamma`` weights it by Min-SNR-gamma), independent uniform training steps
    (``timestep_sampling="low_discrepancy"`` draws one per stratum).
    """
    betas = make_beta_schedule(schedule, num_timesteps, beta_start=beta_start, beta_end=beta_end)
    return GaussianDiffusion(
        betas,
        prediction=prediction,
        learn_sigma=learn_sigma,
        loss=loss,
        min_snr_gamma=min_snr_gamma,
        timestep_sampling=timestep_sampling,
    )


def build_sampler(
    diffusion: Diffusion,
    name: str = "ddpm",
    steps: int | str | None = None,
    eta: float = 0.0,
    order: int = 2,
    clip_x0: bool = False,
    gamma: float = 0.0,
    langevin_steps_per_step: int = 0,
    langevin_delta: float = 0.1,
) -> Sampler:
    """A sampler for ``diffusion`` by name.

    Args:
        diffusion: the training diffusion (discrete chain or continuous-time).
        name: ``"ddpm"``, ``"ddim"``, ``"dpmsolver"`` or ``"vdm_ancestral"``.
        steps: number of steps (default 250 / 50 / 20 / 256 respectively); on a discrete chain DDPM, DDIM and
            the VDM ancestral sampler also accept a ``space_timesteps`` spacing string such as ``"ddim50"``.
        eta: DDIM noise scale (DDIM only).
        order: DPM-Solver++ order, 1 or 2 (DPM-Solver++ only).
        clip_x0: clamp predicted ``x0`` to ``[-1, 1]``.
        gamma: the VDM ancestral sampler's log-variance interpolation (0 posterior, 1 forward variance).
        langevin_steps_per_step: Langevin corrector steps after each VDM ancestral step.
        langevin_delta: the corrector's step ``delta``.

    On a discrete chain ``ddpm`` / ``ddim`` are the respaced-chain samplers (DDPM with the learned variance
    when there is one); on the continuous-time diffusion they are their level forms: ``ddpm`` is the
    ancestral step with the posterior variance (``gamma = 0``), ``ddim`` is :class:`LevelDDIMSampler`.
    DPM-Solver++ needs a discrete chain.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    if langevin_steps_per_step and name != "vdm_ancestral":
        raise ValueError(f"the Langevin corrector belongs to the vdm_ancestral sampler, not {name!r}")
    if steps is None:
        steps = _DEFAULT_STEPS[name]
    if name == "vdm_ancestral" or isinstance(diffusion, VDMDiffusion):
        if name == "dpmsolver":
            raise ValueError(
                "dpmsolver runs on a discrete chain; with the continuous-time diffusion use vdm_ancestral, "
                "ddim or ddpm"
            )
        return build_guided_sampler(
            diffusion, name, steps, eta, clip_x0, gamma, langevin_steps_per_step, langevin_delta
        )
    if name == "ddpm":
        return DDPMSampler(diffusion, steps=steps, clip_x0=clip_x0)
    if name == "ddim":
        return DDIMSampler(diffusion, steps=steps, eta=eta, clip_x0=clip_x0)
    if not isinstance(steps, int):
        raise ValueError(f"dpmsolver needs an integer number of steps, got {steps!r}")
    return DPMSolverSampler(diffusion, steps=steps, order=order, clip_x0=clip_x0)


def build_guided_sampler(
    diffusion: Diffusion,
    name: str = "vdm_ancestral",
    steps: int | str | None = None,
    eta: float = 0.0,
    clip_x0: bool = False,
    gamma: float = 0.0,
    langevin_steps_per_step: int = 0,
    langevin_delta: float = 0.1,
    **_: object,
) -> LevelSampler:
    """A sampler over ``diffusion.noise_levels(steps)`` that accepts conditioning guides.

    ``vdm_ancestral``: :class:`GammaAncestralSampler`; ``ddpm``: the same with ``gamma = 0`` (the posterior,
    "fixed small", variance; a learned variance is not used); ``ddim``: :class:`LevelDDIMSampler`. Other
    keys of a sampler config (``order``) are accepted and ignored.
    """
    if name not in GUIDED_SAMPLERS:
        raise ValueError(
            f"sampler {name!r} cannot sample with guidance; allowed: {', '.join(GUIDED_SAMPLERS)}"
        )
    if langevin_steps_per_step and name != "vdm_ancestral":
        raise ValueError(f"the Langevin corrector belongs to the vdm_ancestral sampler, not {name!r}")
    levels = diffusion.noise_levels(_DEFAULT_STEPS[name] if steps is None else steps)
    common = {"prediction": diffusion.prediction, "learn_sigma": diffusion.learn_sigma, "clip_x0": clip_x0}
    if name == "ddim":
        return LevelDDIMSampler(levels, eta=eta, **common)
    return GammaAncestralSampler(
        levels,
        gamma=gamma if name == "vdm_ancestral" else 0.0,
        langevin_steps_per_step=langevin_steps_per_step,
        langevin_delta=langevin_delta,
        **common,
    )
