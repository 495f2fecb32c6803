"""The level samplers (VDM's gamma-ancestral sampler, its Langevin corrector, DDIM on levels): spec tests
T15-T17, and agreement with vidgen's respaced-chain DDPM / DDIM samplers on the same chain and noise.

The data are Gaussian, so the optimal denoiser is known in closed form: for ``x ~ N(MU, S^2)`` and
``z = alpha x + sigma eps``, ``E[x | z] = MU + alpha S^2 (z - alpha MU) / (alpha^2 S^2 + sigma^2)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.diffusion import (
    DDIMSampler,
    DDPMSampler,
    GammaAncestralSampler,
    GaussianDiffusion,
    LevelDDIMSampler,
    NoiseLevels,
    VDMDiffusion,
    build_sampler,
    eps_from_v,
    make_beta_schedule,
    prediction_target,
    x0_from_v,
)

MU, S = 0.5, 0.8


def oracle(prediction: str, alpha_of, mu: float = MU, s: float = S):
    """Optimal ``model_fn(z, time)`` for 1-D Gaussian data; ``alpha_of(time) -> (B,)`` float64 alpha."""

    def model_fn(z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        alpha = alpha_of(time).to(z.dtype).reshape(-1, *([1] * (z.dim() - 1)))
        sigma = (1 - alpha**2).sqrt()
        x0 = mu + alpha * s**2 * (z - alpha * mu) / (alpha**2 * s**2 + sigma**2)
        eps = (z - alpha * x0) / sigma
        return prediction_target(prediction, x0, eps, alpha, sigma)

    return model_fn


def vdm_alpha(time: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(time.double()).sqrt()


def chain_alpha(diffusion: GaussianDiffusion):
    return lambda time: diffusion.alphas_cumprod[time].sqrt()


# ---------------------------------------------------------------------------------------------- T15


def _langevin_once(variant: str = "sampler") -> tuple[float, float, float, float]:
    """One corrector step from ``z ~ q(z_s)`` at a mid level (t = 0.5: lambda 0, sigma^2 / Var(z) = 0.8),
    through the sampler's own ``_langevin`` (``variant="sampler"``) or a deliberately broken step (``"sign"``:
    +delta/2 sigma eps; ``"unscaled"``: step size delta instead of delta sigma^2). Returns the mean and
    variance before and after."""
    diffusion = VDMDiffusion(prediction="eps")
    sampler = GammaAncestralSampler(
        diffusion.noise_levels(4), "eps", langevin_steps_per_step=1, langevin_delta=0.1
    )
    level = 2
    coef = sampler.levels.step(level - 1)
    alpha, sigma, delta = coef.alpha_s, coef.sigma_s, 0.1
    n = 200_000
    generator = torch.Generator().manual_seed(0)
    x = MU + S * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    z = alpha * x + sigma * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    model = oracle("eps", vdm_alpha)
    if variant == "sampler":
        after = sampler._langevin(model, z, level, coef, (), generator)
    else:
        eps = model(z, sampler.levels.time(level, n, "cpu", torch.float64))
        xi = torch.randn(z.shape, generator=generator, dtype=torch.float64)
        if variant == "sign":
            after = z + 0.5 * delta * sigma * eps + math.sqrt(delta) * sigma * xi
        else:
            after = z - 0.5 * delta * eps + math.sqrt(delta) * xi
    return z.mean().item(), z.var().item(), after.mean().item(), after.var().item()


def test_t15_langevin_corrector_keeps_a_gaussian() -> None:
    """A corrector step with a perfect denoiser from z ~ q(z_s) keeps mean and variance within 2%; the
    check catches a sign flip and a step of delta instead of delta sigma^2."""
    mean0, var0, mean1, var1 = _langevin_once()
    assert var0 == pytest.approx(0.5 * S**2 + 0.5, rel=0.01)
    assert mean1 == pytest.approx(mean0, abs=0.02 * math.sqrt(var0))
    assert var1 == pytest.approx(var0, rel=0.02)
    assert _langevin_once("sign")[3] > 1.05 * var0
    assert _langevin_once("unscaled")[3] > 1.03 * var0


# ---------------------------------------------------------------------------------------------- T16


def test_t16_gamma_interpolates_posterior_and_forward_variance() -> None:
    """gamma 0: posterior variance (DDPM's fixed small beta~); gamma 1: the forward variance sigma^2_{t|s};
    between: the geometric interpolation. On a discrete chain the two are the respaced posterior variance and
    beta."""
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 1000))
    chain_levels = diffusion.noise_levels(50)
    respaced = build_sampler(diffusion, "ddpm", steps=50).chain
    for k in (0, 20, 48):
        coef = chain_levels.step(k)
        i = 49 - k
        post, fwd = respaced.posterior_variance[i].item(), respaced.betas[i].item()
        assert GammaAncestralSampler(chain_levels, "eps", gamma=0.0).variance(coef) == pytest.approx(
            post, rel=1e-9
        )
        assert GammaAncestralSampler(chain_levels, "eps", gamma=1.0).variance(coef) == pytest.approx(
            fwd, rel=1e-9
        )
        mid = GammaAncestralSampler(chain_levels, "eps", gamma=0.3).variance(coef)
        assert mid == pytest.approx(post**0.7 * fwd**0.3, rel=1e-9)
        assert post < mid < fwd


def test_t16_gamma_zero_is_vidgens_ddpm_on_the_same_chain_and_noise() -> None:
    """The gamma-0 ancestral sampler on a discrete chain's levels reproduces DDPMSampler (fixed small variance)
    sample for sample: same respaced chain, same start noise, same generator (the draws line up)."""
    diffusion = GaussianDiffusion(make_beta_schedule("cosine", 1000), prediction="v")
    model = oracle("v", chain_alpha(diffusion))
    shape = (64, 1, 3, 2, 2)
    for steps in (20, "ddim25"):
        reference = DDPMSampler(diffusion, steps).sample(
            model, shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
        )
        ancestral = build_sampler(diffusion, "vdm_ancestral", steps=steps, gamma=0.0).sample(
            model, shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
        )
        torch.testing.assert_close(ancestral, reference, rtol=1e-9, atol=1e-9)
    # and the level DDIM is vidgen's DDIM, deterministic and with eta = 1
    for eta in (0.0, 1.0):
        reference = DDIMSampler(diffusion, 20, eta=eta).sample(
            model, shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64
        )
        levels = LevelDDIMSampler(diffusion.noise_levels(20), "v", eta=eta).sample(
            model, shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64
        )
        torch.testing.assert_close(levels, reference, rtol=1e-9, atol=1e-9)


def predicted_variance(levels: NoiseLevels, gamma: float, langevin: int, delta: float = 0.1) -> float:
    """The exact output variance of the gamma-ancestral sampler (+ corrector) for N(0, 1) data and its optimal
    denoiser x^ = alpha z, by the linear recursion of VDM's formulas written out here independently of the
    sampler: r = exp(lambda_t - lambda_s), z_s = (r alpha_s / alpha_t + (1 - r) alpha_s alpha_t) z_t + noise of
    variance ((1 - r) sigma_s^2)^(1 - gamma) ((1 - r) sigma_t^2)^gamma; a corrector step maps z to
    (1 - delta sigma_s^2 / 2) z + sqrt(delta) sigma_s xi (eps^ = sigma_s z)."""
    alphas, sigmas = levels.alphas.tolist(), levels.sigmas.tolist()
    var = 1.0  # z at the first level is the start noise
    for k in range(len(levels) - 1):
        a_t, s_t, a_s, s_s = alphas[k], sigmas[k], alphas[k + 1], sigmas[k + 1]
        r = math.exp(2 * math.log(a_t / s_t) - 2 * math.log(a_s / s_s))
        gain = r * a_s / a_t + (1 - r) * a_s * a_t
        noise = ((1 - r) * s_s**2) ** (1 - gamma) * ((1 - r) * s_t**2) ** gamma
        var = gain**2 * var + noise
        for _ in range(langevin):
            var = (1 - 0.5 * delta * s_s**2) ** 2 * var + delta * s_s**2
    return alphas[len(levels) - 1] ** 2 * var  # the last step returns x^ = alpha z


@pytest.mark.parametrize(
    ("gamma", "steps", "langevin"), [(0.0, 64, 0), (0.1, 64, 0), (0.3, 32, 0), (1.0, 32, 0), (0.1, 32, 1)]
)
def test_t16_gaussian_toy_variance_is_the_closed_form(gamma: float, steps: int, langevin: int) -> None:
    """With the optimal denoiser of N(0, 1) data the samples' variance is the closed-form recursion's (within
    0.02, n = 40k): the posterior variance (gamma 0) undershoots at finite steps (0.93 at 64 steps), the forward
    variance (gamma 1, exact for Gaussian data) lands on 1 (less the last level's sigma^2 = 0.002)."""
    model = oracle("eps", vdm_alpha, mu=0.0, s=1.0)
    sampler = build_sampler(
        VDMDiffusion(), "vdm_ancestral", steps=steps, gamma=gamma, langevin_steps_per_step=langevin
    )
    x = sampler.sample(model, (40_000, 1), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = predicted_variance(sampler.levels, gamma, langevin)
    assert abs(x.mean().item()) < 0.02
    assert x.var().item() == pytest.approx(expected, abs=0.02)
    if (
        gamma == 1.0
    ):  # exact but for the final denoising jump, which drops Var(x | z) = sigma^2 of the last level
        last_sigma = sampler.levels.sigmas[steps - 1].item()
        assert expected == pytest.approx(1.0 - last_sigma**2, abs=1e-9) and last_sigma**2 < 0.003


@pytest.mark.parametrize("gamma", [0.0, 0.1, 1.0])
def test_t16_gaussian_toy_reaches_variance_one(gamma: float) -> None:
    """The spec's toy check: with 256 steps every gamma samples N(0, 1) data with variance 1 +- 0.03."""
    model = oracle("eps", vdm_alpha, mu=0.0, s=1.0)
    sampler = build_sampler(VDMDiffusion(), "vdm_ancestral", steps=256, gamma=gamma)
    x = sampler.sample(model, (20_000, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert abs(x.mean().item()) < 0.03
    assert x.var().item() == pytest.approx(1.0, abs=0.03)


def test_t16_swapped_variances_are_caught() -> None:
    """A sampler with posterior and forward variance swapped misses the closed form by far more than 0.02."""

    class Swapped(GammaAncestralSampler):
        def variance(self, coef):
            return coef.var_forward if self.gamma == 0.0 else coef.var_posterior

    model = oracle("eps", vdm_alpha, mu=0.0, s=1.0)
    sampler = Swapped(VDMDiffusion().noise_levels(64), "eps", gamma=0.0)
    x = sampler.sample(model, (40_000, 1), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert abs(x.var().item() - predicted_variance(sampler.levels, 0.0, 0)) > 0.05


# ---------------------------------------------------------------------------------------------- T17


def test_t17_v_round_trip_and_angular_ddim_step() -> None:
    """x = alpha z - sigma v, eps = sigma z + alpha v reconstruct (x, eps) exactly; with phi = atan(sigma /
    alpha) the angular step cos(phi_s - phi_t) z + sin(phi_s - phi_t) v equals the eps-form DDIM step
    alpha_s x + sigma_s eps, which is the level DDIM sampler's step."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=generator, dtype=torch.float64)
    eps = torch.randn(1000, generator=generator, dtype=torch.float64)
    levels = VDMDiffusion().noise_levels(10)
    for k in (0, 3, 8):
        coef = levels.step(k)
        a_t, s_t, a_s, s_s = coef.alpha_t, coef.sigma_t, coef.alpha_s, coef.sigma_s
        z = a_t * x + s_t * eps
        v = prediction_target("v", x, eps, a_t, s_t)
        torch.testing.assert_close(v, a_t * eps - s_t * x, rtol=0, atol=0)
        torch.testing.assert_close(x0_from_v(z, v, a_t, s_t), x, rtol=0, atol=1e-12)
        torch.testing.assert_close(eps_from_v(z, v, a_t, s_t), eps, rtol=0, atol=1e-12)
        phi_t, phi_s = math.atan2(s_t, a_t), math.atan2(s_s, a_s)
        angular = math.cos(phi_s - phi_t) * z + math.sin(phi_s - phi_t) * v
        ddim = a_s * x + s_s * eps
        torch.testing.assert_close(angular, ddim, rtol=0, atol=1e-12)
        stepped = LevelDDIMSampler(levels, "v")._step(coef, z, x, eps, None)
        torch.testing.assert_close(stepped, ddim, rtol=0, atol=1e-12)
        # the seed's garbled sign (z_s = cos z - sin v) is not the DDIM step
        assert (math.cos(phi_s - phi_t) * z - math.sin(phi_s - phi_t) * v - ddim).abs().max() > 0.1


# ---------------------------------------------------------------------------------------------- plumbing


def test_level_samplers_take_the_first_channels_of_a_learned_variance_output_and_give_the_model_its_time() -> (
    None
):
    """learn_sigma models: the variance half is ignored; a discrete chain calls the model with int64
    original steps, the continuous diffusion with the float log-SNR of each level."""
    diffusion = GaussianDiffusion(make_beta_schedule("linear", 1000), learn_sigma=True, loss="hybrid")
    base = oracle("eps", chain_alpha(diffusion))
    seen: list[torch.Tensor] = []

    def with_variance(z: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        seen.append(time)
        return torch.cat([base(z, time), torch.full_like(z, 7.0)], dim=1)

    shape = (8, 1, 2, 2, 2)
    sampler = build_sampler(diffusion, "vdm_ancestral", steps=10, gamma=0.0)
    out = sampler.sample(
        with_variance, shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    plain = build_sampler(GaussianDiffusion(make_beta_schedule("linear", 1000)), "vdm_ancestral", steps=10)
    ref = plain.sample(base, shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(out, ref)
    assert all(t.dtype == torch.int64 for t in seen)
    assert [int(t[0]) for t in seen] == sampler.levels.times.tolist()
    seen.clear()
    vdm = build_sampler(VDMDiffusion(), "ddpm", steps=5)
    assert isinstance(vdm, GammaAncestralSampler) and vdm.gamma == 0.0
    vdm.sample(lambda z, t: seen.append(t) or torch.zeros_like(z), (2, 1), dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in seen)
    torch.testing.assert_close(torch.stack([t[0] for t in seen]), vdm.levels.times, rtol=0, atol=0)


def test_build_sampler_refuses_what_a_diffusion_cannot_do() -> None:
    with pytest.raises(ValueError, match="discrete chain"):
        build_sampler(VDMDiffusion(), "dpmsolver")
    with pytest.raises(ValueError, match="Langevin"):
        build_sampler(VDMDiffusion(), "ddim", langevin_steps_per_step=1)
    with pytest.raises(ValueError, match="gamma"):
        build_sampler(VDMDiffusion(), "vdm_ancestral", gamma=2.0)
    assert isinstance(build_sampler(VDMDiffusion(), "ddim"), LevelDDIMSampler)
    assert len(build_sampler(VDMDiffusion(), "vdm_ancestral").levels) == 256
    assert isinstance(NoiseLevels.from_logsnr(torch.tensor([-1.0, 1.0])), NoiseLevels)
