"""Model-agnostic Gaussian diffusion: schedules, parameterisations, losses, respacing, samplers, guidance.

Tensors are ``(B, C, ...)`` (videos ``(B, C, F, H, W)``). What a model receives as its time ``t`` ``(B,)``
depends on the diffusion (``diffusion.model_time``): int64 steps of the original chain for the discrete
:class:`GaussianDiffusion` (``"step"``), the float log-SNR ``lambda_t`` for the continuous-time
:class:`VDMDiffusion` (``"logsnr"``). :class:`NoiseLevels` is the view of a sampling grid both provide
(``noise_levels(steps)``), on which the level samplers and the conditioning guides are written once.
"""

from vidgen.diffusion.builders import (
    GUIDED_SAMPLERS,
    SAMPLERS,
    Diffusion,
    build_diffusion,
    build_guided_sampler,
    build_sampler,
)
from vidgen.diffusion.continuous import LOGSNR_SCHEDULES, VDMDiffusion, build_vdm_diffusion, cosine_logsnr
from vidgen.diffusion.gaussian import LOSS_TYPES, GaussianDiffusion, ModelFn
from vidgen.diffusion.guidance import guided_model_fn
from vidgen.diffusion.guided_samplers import GammaAncestralSampler, LevelDDIMSampler, LevelSampler
from vidgen.diffusion.levels import NoiseLevels, StepCoefficients
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
from vidgen.diffusion.reconstruction import (
    DOWNSAMPLERS,
    FrameGuide,
    GuidanceError,
    Guide,
    SuperResolutionGuide,
    make_downsampler,
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
    "DOWNSAMPLERS",
    "DPM_SOLVER_SPACINGS",
    "GUIDED_SAMPLERS",
    "LOGSNR_SCHEDULES",
    "LOSS_TYPES",
    "PREDICTIONS",
    "SAMPLERS",
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverSampler",
    "Diffusion",
    "FrameGuide",
    "GammaAncestralSampler",
    "GaussianDiffusion",
    "GuidanceError",
    "Guide",
    "LevelDDIMSampler",
    "LevelSampler",
    "ModelFn",
    "NoiseLevels",
    "RespacedSampler",
    "Sampler",
    "StepCoefficients",
    "SuperResolutionGuide",
    "VDMDiffusion",
    "build_diffusion",
    "build_guided_sampler",
    "build_sampler",
    "build_vdm_diffusion",
    "cosine_alpha_bar",
    "cosine_logsnr",
    "discretized_gaussian_log_likelihood",
    "dpm_solver_grid",
    "eps_from_v",
    "eps_from_x0",
    "guided_model_fn",
    "make_beta_schedule",
    "make_downsampler",
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
