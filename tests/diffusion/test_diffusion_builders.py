"""Config-facing builders."""

import pytest

from vidgen.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    build_diffusion,
    build_sampler,
    make_beta_schedule,
)


def test_build_diffusion_defaults_and_options() -> None:
    diffusion = build_diffusion()
    assert diffusion.num_timesteps == 1000
    assert (diffusion.prediction, diffusion.learn_sigma, diffusion.loss_type) == ("eps", True, "hybrid")
    assert diffusion.betas[0].item() == 1e-4
    custom = build_diffusion("scaled_linear", 500, prediction="v", learn_sigma=False, loss="simple")
    assert (custom.num_timesteps, custom.prediction, custom.learn_sigma) == (500, "v", False)
    assert custom.betas[-1].item() == pytest.approx(0.012, rel=1e-14)
    with pytest.raises(ValueError, match="learn_sigma"):
        build_diffusion(learn_sigma=False)
    with pytest.raises(ValueError, match="linear, cosine, scaled_linear"):
        build_diffusion("sigmoid")


def test_build_sampler_defaults_and_options() -> None:
    diffusion = build_diffusion()
    ddpm = build_sampler(diffusion)
    assert isinstance(ddpm, DDPMSampler) and ddpm.chain.num_timesteps == 250
    ddim = build_sampler(diffusion, "ddim", eta=0.3, clip_x0=True)
    assert isinstance(ddim, DDIMSampler) and ddim.chain.num_timesteps == 50
    assert (ddim.eta, ddim.clip_x0) == (0.3, True)
    assert build_sampler(diffusion, "ddim", steps="ddim25").chain.timestep_map.tolist() == list(
        range(0, 1000, 40)
    )
    dpm = build_sampler(diffusion, "dpmsolver", order=1)
    assert isinstance(dpm, DPMSolverSampler) and len(dpm.indices) == 20 and dpm.order == 1
    assert len(build_sampler(diffusion, "dpmsolver", steps=8).timesteps) == 8
    with pytest.raises(ValueError, match="ddpm, ddim, dpmsolver"):
        build_sampler(diffusion, "euler")
    with pytest.raises(ValueError, match="order"):
        build_sampler(diffusion, "dpmsolver", order=3)


def test_linear_schedule_too_short_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        make_beta_schedule("linear", 10)
