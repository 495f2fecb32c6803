"""The continuous-time VDM diffusion (cosine log-SNR schedule), the timestep draw the LightningModule uses, and
the noise levels both diffusions hand to the level samplers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.diffusion import (
    GaussianDiffusion,
    NoiseLevels,
    VDMDiffusion,
    build_diffusion,
    cosine_logsnr,
    make_beta_schedule,
    respace,
    space_timesteps,
)


def test_cosine_logsnr_spans_the_range_and_matches_the_tan_form() -> None:
    """lambda(0) = 20, lambda(1) = -20, decreasing; lambda(1/256) = 10.17 (spec 1.3.9); alpha^2 + sigma^2 = 1 and
    log(alpha^2 / sigma^2) gives lambda back."""
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    logsnr = cosine_logsnr(t)
    assert logsnr[0].item() == pytest.approx(20.0, abs=1e-12)
    assert logsnr[-1].item() == pytest.approx(-20.0, abs=1e-10)  # tan near pi/2: float64 rounding
    assert bool((logsnr[1:] < logsnr[:-1]).all())
    assert cosine_logsnr(torch.tensor(1 / 256)).item() == pytest.approx(10.17, abs=0.005)
    assert cosine_logsnr(torch.tensor(0.5)).item() == pytest.approx(0.0, abs=1e-12)  # symmetric range
    # independent form: b = atan(e^-10), a = atan(e^10) - b
    b = math.atan(math.exp(-10.0))
    a = math.atan(math.exp(10.0)) - b
    torch.testing.assert_close(logsnr, -2 * torch.log(torch.tan(a * t + b)), rtol=0, atol=1e-10)
    alpha, sigma = VDMDiffusion().alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), logsnr, rtol=0, atol=1e-9)


def test_discrete_timestep_draw_is_the_old_randint_bit_for_bit() -> None:
    """The module's draw moved into ``sample_timesteps``: the same values and the same generator state after it
    (so resumed runs and existing loss curves are unchanged)."""
    diffusion = build_diffusion()
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(diffusion.sample_timesteps(7, generator=a), torch.randint(0, 1000, (7,), generator=b))
    assert torch.equal(torch.randn(5, generator=a), torch.randn(5, generator=b))


def test_continuous_timestep_draw_is_uniform_and_seeded() -> None:
    diffusion = VDMDiffusion()
    t = diffusion.sample_timesteps(20_000, generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.float64 and t.shape == (20_000,)
    assert t.min().item() >= 0.0 and t.max().item() < 1.0
    assert t.mean().item() == pytest.approx(0.5, abs=0.01) and t.var().item() == pytest.approx(
        1 / 12, abs=0.002
    )
    again = diffusion.sample_timesteps(20_000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_training_loss_calls_the_model_with_the_logsnr_and_regresses_the_target(prediction: str) -> None:
    """The model receives lambda_t (float, exactly logsnr(t)); the loss is the per-sample MSE against the
    target: eps, v = alpha eps - sigma x, or x. A model that returns the target has loss 0; the zero model has
    loss mean(target^2)."""
    diffusion = VDMDiffusion(prediction=prediction)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, 2, 5, 5, generator=generator, dtype=torch.float64)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    t = torch.tensor([0.0, 0.25, 0.6, 1.0], dtype=torch.float64)
    alpha, sigma = (v.reshape(-1, 1, 1, 1, 1) for v in diffusion.alpha_sigma(t))
    target = {"eps": noise, "v": alpha * noise - sigma * x0, "x0": x0}[prediction]
    seen = {}

    def perfect(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        seen["z"], seen["lam"] = z, lam
        return target

    losses = diffusion.training_losses(perfect, x0, t, noise)
    assert seen["lam"].dtype == torch.float64
    torch.testing.assert_close(seen["lam"], cosine_logsnr(t), rtol=0, atol=0)
    torch.testing.assert_close(seen["z"], alpha * x0 + sigma * noise, rtol=0, atol=1e-15)
    assert set(losses) == {"loss", "mse"} and losses["loss"].shape == (4,)
    assert torch.equal(losses["loss"], torch.zeros(4, dtype=torch.float64))
    zero = diffusion.training_losses(lambda z, lam: torch.zeros_like(z), x0, t, noise)
    torch.testing.assert_close(zero["mse"], target.square().mean(dim=(1, 2, 3, 4)), rtol=1e-14, atol=0)


def test_training_loss_rejects_a_learned_variance_output() -> None:
    diffusion = VDMDiffusion()
    x0 = torch.zeros(2, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="no learned variance"):
        diffusion.training_losses(lambda z, lam: torch.cat([z, z], 1), x0, torch.rand(2))
    with pytest.raises(ValueError, match="learn_sigma"):
        VDMDiffusion(learn_sigma=True)


def test_continuous_levels_are_the_uniform_t_grid_then_the_data() -> None:
    levels = VDMDiffusion().noise_levels(8)
    t = 1.0 - torch.arange(8, dtype=torch.float64) / 8
    torch.testing.assert_close(levels.times, cosine_logsnr(t), rtol=0, atol=0)
    assert levels.times.dtype == torch.float64 and len(levels) == 8
    assert levels.alphas[-1].item() == 1.0 and levels.sigmas[-1].item() == 0.0
    torch.testing.assert_close(levels.alphas[:-1] ** 2, torch.sigmoid(levels.times), rtol=1e-14, atol=0)
    # the step to the clean level returns the data prediction: no z term, no noise
    last = levels.step(7)
    assert last.final and (last.mean_z, last.mean_x, last.var_posterior) == (0.0, 1.0, 0.0)


def test_discrete_levels_are_the_respaced_chain() -> None:
    """alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar) and the model time = the original step, at the
    respaced chain's steps; the posterior coefficients equal GaussianDiffusion's on that chain."""
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 1000))
    for steps in (25, "ddim10", 1000):
        levels = diffusion.noise_levels(steps)
        chain = respace(diffusion, space_timesteps(1000, steps))
        assert torch.equal(levels.times, chain.timestep_map.flip(0))
        assert levels.times.dtype == torch.int64
        torch.testing.assert_close(levels.alphas[:-1] ** 2, chain.alphas_cumprod.flip(0), rtol=1e-12, atol=0)
        for k in (0, len(levels) // 2, len(levels) - 2):
            i = len(levels) - 1 - k  # chain index of level k
            coef = levels.step(k)
            torch.testing.assert_close(
                torch.tensor(
                    [coef.mean_x, coef.mean_z, coef.var_posterior, coef.var_forward], dtype=torch.float64
                ),
                torch.stack(
                    [
                        chain.posterior_mean_coef1[i],
                        chain.posterior_mean_coef2[i],
                        chain.posterior_variance[i],
                        chain.betas[i],
                    ]
                ),
                rtol=1e-9,
                atol=0,
            )


def test_noise_levels_reject_a_grid_that_is_not_noisy_to_clean() -> None:
    with pytest.raises(ValueError, match="noisy to clean"):
        NoiseLevels.from_logsnr(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="integer"):
        VDMDiffusion().noise_levels("ddim50")


def test_vdm_config_builds_validates_and_names_bad_keys(tmp_path: Path) -> None:
    cfg = compose_config(["diffusion=vdm", "sampler=vdm_ancestral"], run_dir=tmp_path)
    validate_config(cfg)
    diffusion = instantiate(cfg.diffusion)
    assert isinstance(diffusion, VDMDiffusion)
    assert (diffusion.logsnr_min, diffusion.logsnr_max, diffusion.loss_type) == (-20.0, 20.0, "mse")
    assert diffusion.prediction == "v"  # the synthetic recipe's choice, which diffusion=vdm keeps
    assert cfg.model.learn_sigma is False  # the model follows diffusion.learn_sigma: C output channels
    for override, key in [
        ("diffusion.learn_sigma=true", "diffusion.learn_sigma"),
        ("diffusion.loss=hybrid", "diffusion.loss"),
        ("diffusion.logsnr_min=30", "diffusion.logsnr_min"),
        ("diffusion.prediction=score", "diffusion.prediction"),
        ("+diffusion.num_timesteps=1000", "diffusion.num_timesteps"),
        ("sampler=dpmsolver", "sampler.name"),
        ("sampler.gamma=1.5", "sampler.gamma"),
        ("sampler.langevin_delta=0", "sampler.langevin_delta"),
    ]:
        bad = compose_config(["diffusion=vdm", "sampler=vdm_ancestral", override], run_dir=tmp_path)
        with pytest.raises(ConfigError) as info:
            validate_config(bad)
        assert info.value.key == key, str(info.value)
    bad = compose_config(["sampler=ddim", "+sampler.langevin_steps_per_step=1"], run_dir=tmp_path)
    with pytest.raises(ConfigError, match="vdm_ancestral") as info:
        validate_config(bad)
    assert info.value.key == "sampler.langevin_steps_per_step"
