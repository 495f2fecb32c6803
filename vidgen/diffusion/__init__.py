"""Model-agnostic Gaussian diffusion: schedules, parameterisations, losses, respacing, samplers, guidance.

Tensors are ``(B, C, ...)`` (videos ``(B, C, F, H, W)``); timesteps passed to models are ``(B,)`` int64
indices of the original chain.
"""

from vidgen.diffusion.builders import SAMPLERS, build_diffusion, build_sampler
from vidgen.diffusion.gaussian import LOSS_TYPES, GaussianDiffusion, ModelFn
from vidgen.diffusion.guidance import guided_model_fn
from vidgen.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl
from vidgen.diffusion.parameterization import (
    PREDICTIONS,
    eps_from_v,
    eps_from_x0,
    prediction_target,
    prediction_to_x0_eps,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from vidgen.diffusion.respace import respace, space_timesteps
from vidgen.diffusion.samplers import (
    DPM_SOLVER_SPACINGS,
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    RespacedSampler,
    Sampler,
    dpm_solver_grid,
)
from vidgen.diffusion.schedules import BETA_SCHEDULES, cosine_alpha_bar, make_beta_schedule

__all__ = [
    "BETA_SCHEDULES",
    "DPM_SOLVER_SPACINGS",
    "LOSS_TYPES",
    "PREDICTIONS",
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "GaussianDiffusion",
    "ModelFn",
    "RespacedSampler",
    "Sampler",
    "build_diffusion",
    "build_sampler",
    "cosine_alpha_bar",
    "discretized_gaussian_log_likelihood",
    "dpm_solver_grid",
    "eps_from_v",
    "eps_from_x0",
    "guided_model_fn",
    "make_beta_schedule",
    "mean_flat",
    "normal_kl",
    "prediction_target",
    "prediction_to_x0_eps",
    "respace",
    "space_timesteps",
    "v_from_x0_eps",
    "x0_from_eps",
    "x0_from_v",
]
