"""Reconstruction guidance, replacement and super-resolution guidance (VDM §3.1, spec tests T10-T14).

The toys are exactly solvable: ``x`` is Gaussian with covariance ``SIGMA`` (an AR(1) chain over 4 one-pixel
frames), so the Bayes-optimal denoiser is linear, ``x^ = alpha SIGMA (alpha^2 SIGMA + sigma^2 I)^-1 z``, and the
exact conditional ``E[x^b | x^a]`` is known.
"""

from __future__ import annotations

import pytest
import torch

from vidgen.diffusion import (
    FrameGuide,
    GammaAncestralSampler,
    GuidanceError,
    LevelDDIMSampler,
    SuperResolutionGuide,
    VDMDiffusion,
    build_sampler,
    make_downsampler,
)

FRAMES = 4


def ar1(rho: float) -> torch.Tensor:
    """``(4, 4)`` float64 AR(1) covariance ``rho^|i-j|`` (unit marginal variance)."""
    index = torch.arange(FRAMES, dtype=torch.float64)
    return rho ** (index[:, None] - index[None]).abs()


def optimal_eps_model(sigma_x: torch.Tensor, layout: str = "frames"):
    """The Bayes-optimal eps-prediction ``model_fn(z, lambda)`` for ``x ~ N(0, sigma_x)``; the 4 values are the
    frames of ``(n, 1, 4, 1, 1)`` (``layout="frames"``) or the pixels of ``(n, 1, 1, 1, 4)`` (``"pixels"``)."""
    eye = torch.eye(FRAMES, dtype=torch.float64)

    def model_fn(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        alpha2 = torch.sigmoid(logsnr[0].double())
        sigma2 = torch.sigmoid(-logsnr[0].double())
        flat = z.reshape(z.shape[0], FRAMES).double()
        # x^ = alpha SIGMA (alpha^2 SIGMA + sigma^2 I)^-1 z, row-wise
        x_hat = alpha2.sqrt() * torch.linalg.solve(alpha2 * sigma_x + sigma2 * eye, flat.T).T @ sigma_x
        eps = (flat - alpha2.sqrt() * x_hat) / sigma2.sqrt()
        return eps.reshape(z.shape).to(z.dtype)

    return model_fn


def draw(sigma_x: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``(n, 4)`` float64 samples of ``N(0, sigma_x)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, FRAMES, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(sigma_x).T


# ---------------------------------------------------------------------------------------------- T10


def guided_prediction(
    guide: FrameGuide, matrix: torch.Tensor, z: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z after replacement, x~)``: the sampler's guided prediction for the linear x^ = M z (x0-parameterised)."""
    sampler = GammaAncestralSampler(VDMDiffusion().noise_levels(4), "x0")

    def model_fn(zz: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (zz.flatten(1) @ matrix.T).reshape(zz.shape)

    sigma = (1 - alpha**2) ** 0.5
    z, x_tilde, eps_tilde = sampler._denoise(model_fn, z, 0, alpha, sigma, (guide,), None)
    torch.testing.assert_close(eps_tilde, (z - alpha * x_tilde) / sigma, rtol=1e-12, atol=1e-12)
    return z, x_tilde


def test_t10_reconstruction_guidance_is_eq7_for_a_linear_denoiser() -> None:
    """For x^ = M z: x~^b = x^^b + w_r alpha_t M_{A,B}^T (x^a - x^^a), x~^a = x^^a (a sum of squares, the
    gradient w.r.t. z^b only, the factor alpha_t / 2). Channels and pixels ride along: the window is
    (2, 2, 5, 2, 1), frames A = {0, 3}."""
    generator = torch.Generator().manual_seed(0)
    shape = (2, 2, 5, 2, 1)
    size = 2 * 5 * 2
    matrix = torch.randn(size, size, generator=generator, dtype=torch.float64) / size**0.5
    z = torch.randn(shape, generator=generator, dtype=torch.float64)
    frames = [0, 3]
    known = torch.randn(2, 2, 2, 2, 1, generator=generator, dtype=torch.float64)
    alpha, weight = 0.6, 1.7
    z, x_tilde = guided_prediction(FrameGuide(known, frames, weight), matrix, z, alpha)

    x_hat = (z.flatten(1) @ matrix.T).reshape(shape)
    in_a = torch.zeros(shape[1:], dtype=torch.bool)
    in_a[:, frames] = True
    a_index, b_index = in_a.flatten().nonzero().flatten(), (~in_a).flatten().nonzero().flatten()
    target = x_hat.clone()
    target[:, :, frames] = known
    residual = (target - x_hat).flatten(1)[:, a_index]  # x^a - x^^a, (B, |A| C H W) in flattened order
    m_ab = matrix[a_index][:, b_index]  # rows A, columns B
    expected = x_hat.flatten(1).clone()
    expected[:, b_index] += weight * alpha * residual @ m_ab
    torch.testing.assert_close(x_tilde.flatten(1), expected, rtol=0, atol=1e-12)
    assert (x_tilde - x_hat).abs().max() > 0.1  # the guidance term is not negligible here


# ---------------------------------------------------------------------------------------------- T11


def _toy_run(guides, *, seed: int = 7, n: int = 64, steps: int = 12, sampler_kind: str = "ancestral"):
    sigma_x = ar1(0.9)
    model = optimal_eps_model(sigma_x)
    diffusion = VDMDiffusion()
    if sampler_kind == "ancestral":
        sampler = build_sampler(diffusion, "vdm_ancestral", steps=steps, gamma=0.1, langevin_steps_per_step=1)
    else:
        sampler = LevelDDIMSampler(diffusion.noise_levels(steps), "eps", eta=0.5)
    return sampler.sample(
        model,
        (n, 1, FRAMES, 1, 1),
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.float64,
        guides=guides,
    )


@pytest.mark.parametrize("sampler_kind", ["ancestral", "ddim"])
def test_t11_weight_zero_is_replacement_bit_for_bit(sampler_kind: str) -> None:
    """Reconstruction guidance with w_r = 0 goes through the gradient path and yet gives the replacement
    method's samples exactly (same draws, same values), with the Langevin corrector and in DDIM too; an empty
    A, or super-resolution with w_r = 0, gives the unconditional samples exactly."""
    known = draw(ar1(0.9), 64, seed=1)[:, :2].reshape(64, 1, 2, 1, 1)
    replacement = _toy_run([FrameGuide(known, [0, 1], 0.0, "replacement")], sampler_kind=sampler_kind)
    guided = FrameGuide(known, [0, 1], 0.0, "reconstruction")
    reconstruction = _toy_run([guided], sampler_kind=sampler_kind)
    assert guided.gradient and len(guided.errors) > 0  # the gradient path ran
    assert torch.equal(reconstruction, replacement)
    assert not torch.equal(_toy_run([FrameGuide(known, [0, 1], 2.0)], sampler_kind=sampler_kind), replacement)

    unconditional = _toy_run([], sampler_kind=sampler_kind)
    empty = FrameGuide(known[:, :, :0], [], 3.0)
    assert torch.equal(_toy_run([empty], sampler_kind=sampler_kind), unconditional)
    lowres = torch.zeros(64, 1, FRAMES, 1, 1, dtype=torch.float64)
    superres = SuperResolutionGuide(lowres, make_downsampler("area", (1, 1)), 0.0)
    assert torch.equal(_toy_run([superres], sampler_kind=sampler_kind), unconditional)
    assert not torch.equal(replacement, unconditional)


# ---------------------------------------------------------------------------------------------- T12


def conditional_toy(weight: float, method: str, n: int = 4000, steps: int = 32) -> tuple[float, float]:
    """Spec §3.4: condition the AR(1) rho = 0.9 chain on frames 0-1, generate frames 2-3 (gamma 0.1, VDM
    schedule). Returns corr(x_1, x_2) of the samples and their MSE to the exact E[x^b | x^a]."""
    rho = 0.9
    sigma_x = ar1(rho)
    given = draw(sigma_x, n, seed=1)[:, :2]
    guide = FrameGuide(given.reshape(n, 1, 2, 1, 1), [0, 1], weight, method)
    sampler = build_sampler(VDMDiffusion(), "vdm_ancestral", steps=steps, gamma=0.1)
    out = sampler.sample(
        optimal_eps_model(sigma_x),
        (n, 1, FRAMES, 1, 1),
        generator=torch.Generator().manual_seed(2),
        dtype=torch.float64,
        guides=[guide],
    ).reshape(n, FRAMES)
    assert torch.equal(out[:, :2], given)  # T14: the given frames come back exactly
    exact_mean = given[:, 1:2] * torch.tensor([[rho, rho**2]], dtype=torch.float64)
    corr = torch.corrcoef(torch.stack([out[:, 1], out[:, 2]]))[0, 1].item()
    mse = (out[:, 2:] - exact_mean).square().mean().item()
    return corr, mse


def test_t12_reconstruction_guidance_beats_replacement_on_the_gaussian_toy() -> None:
    """corr(x^a_last, x^b_first) is 0.9 exactly; RG (w_r = 2) lands in [0.87, 0.93], replacement below 0.80;
    MSE to the exact conditional mean (0.267 for an exact sampler): RG < 0.30 < 0.40 < replacement."""
    corr_rg, mse_rg = conditional_toy(2.0, "reconstruction")
    corr_rep, mse_rep = conditional_toy(0.0, "replacement")
    assert 0.87 <= corr_rg <= 0.93, corr_rg
    assert corr_rep < 0.80, corr_rep
    assert mse_rg < 0.30 < 0.40 < mse_rep, (mse_rg, mse_rep)


# ---------------------------------------------------------------------------------------------- T13


def superres_toy(
    weight: float, nan_to_num: bool = False, dtype: torch.dtype = torch.float64, inference_mode: bool = False
) -> torch.Tensor:
    """Spec §3.4 SR toy: x in R^4 (4 pixels, AR(1) rho = 0.8), y = 2x average pooling; 64 steps, gamma 0.1.
    Returns the per-sample ||D x - y||^2 ``(n,)``; with ``inference_mode`` the target and the sampling are
    made under ``torch.inference_mode`` (the denoiser, like a real network's weights, outside it)."""
    n = 2000
    sigma_x = ar1(0.8)
    model = optimal_eps_model(sigma_x)
    downsample = make_downsampler("area", (1, 2))
    with torch.inference_mode(inference_mode):
        lowres = downsample(draw(sigma_x, n, seed=1).reshape(n, 1, 1, 1, FRAMES)).to(dtype)
        guide = SuperResolutionGuide(
            lowres, downsample, weight, nan_to_num=nan_to_num, weight_key="superres.weight"
        )
        sampler = build_sampler(VDMDiffusion(), "vdm_ancestral", steps=64, gamma=0.1)
        out = sampler.sample(
            model,
            (n, 1, 1, 1, FRAMES),
            generator=torch.Generator().manual_seed(2),
            dtype=dtype,
            guides=[guide],
        )
        return (downsample(out) - lowres).square().flatten(1).sum(1)


def test_t13_superresolution_guidance_reaches_the_low_resolution_target() -> None:
    """mean ||D x - y||^2 < 0.01 for w_r in {1, 2}, > 1 unguided (w_r = 0: unconditional, about 3.5)."""
    assert superres_toy(1.0).mean().item() < 0.01
    assert superres_toy(2.0).mean().item() < 0.01
    assert superres_toy(0.0).mean().item() > 1.0


def test_t13_too_large_a_weight_raises_or_stays_finite_with_nan_to_num() -> None:
    """w_r = 50 with 64 steps overshoots (the toy's error grows to about 1e24, still finite in float64); the
    sampler either raises or returns finite samples with nan_to_num on. A guidance term that does turn non-
    finite raises a GuidanceError naming the weight, or is zeroed with nan_to_num."""
    for nan_to_num in (False, True):
        try:
            errors = superres_toy(50.0, nan_to_num=nan_to_num, dtype=torch.float32)
        except GuidanceError:
            assert not nan_to_num
        else:
            assert bool(torch.isfinite(errors).all())

    def nan_gradient(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """A finite output whose gradient is NaN: sqrt'(0) = inf times d(z - z)/dz = 0."""
        return 0.5 * z + torch.sqrt(z - z)

    sampler = build_sampler(VDMDiffusion(), "vdm_ancestral", steps=8)
    known = torch.ones(4, 1, 2, 1, 1)
    shape = (4, 1, 4, 1, 1)
    with pytest.raises(GuidanceError, match=r"extend\.weight=2\.0"):
        sampler.sample(
            nan_gradient, shape, guides=[FrameGuide(known, [0, 1], 2.0, weight_key="extend.weight")]
        )
    cleaned = sampler.sample(
        nan_gradient,
        shape,
        generator=torch.Generator().manual_seed(0),
        guides=[FrameGuide(known, [0, 1], 2.0, nan_to_num=True)],
    )
    replacement = sampler.sample(
        nan_gradient,
        shape,
        generator=torch.Generator().manual_seed(0),
        guides=[FrameGuide(known, [0, 1], 0.0, "replacement")],
    )
    assert bool(torch.isfinite(cleaned).all())
    assert torch.equal(cleaned, replacement)  # every correction entry was NaN and is zeroed


def test_guidance_runs_inside_inference_mode() -> None:
    """A caller in torch.inference_mode still gets the guidance gradient (the sampler leaves inference mode
    for the vector-Jacobian product)."""
    assert superres_toy(2.0, inference_mode=True).mean().item() < 0.01


# ---------------------------------------------------------------------------------------------- T14


def test_t14_reconstruction_error_along_the_trajectory_is_lower_with_guidance() -> None:
    """The given frames of the output are x^a exactly (checked in the T12 runs) and the mean over steps of
    ||x^a - x^^a(z_t)||^2 is lower with w_r = 2 than with w_r = 0 (the same RNG path)."""
    sigma_x = ar1(0.9)
    n = 500
    given = draw(sigma_x, n, seed=4)[:, :2].reshape(n, 1, 2, 1, 1)
    means = {}
    for weight in (0.0, 2.0):
        guide = FrameGuide(given, [0, 1], weight, "reconstruction")
        sampler = build_sampler(VDMDiffusion(), "vdm_ancestral", steps=32, gamma=0.1)
        out = sampler.sample(
            optimal_eps_model(sigma_x),
            (n, 1, FRAMES, 1, 1),
            generator=torch.Generator().manual_seed(5),
            dtype=torch.float64,
            guides=[guide],
        )
        assert torch.equal(out[:, :, :2], given)
        assert len(guide.errors) == 32
        means[weight] = torch.stack(guide.errors).mean().item()
    assert means[2.0] < means[0.0], means
