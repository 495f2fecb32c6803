"""Samplers on a problem with a closed-form optimal model: 1-D Gaussian data N(MU, S^2).

For ``x0 ~ N(MU, S^2)`` and ``x_t = a x0 + s eps`` the optimal predictors are linear in ``x_t``:
``eps* = s (x_t - a MU) / (a^2 S^2 + s^2)`` and ``E[x0 | x_t] = MU + a S^2 (x_t - a MU) / (a^2 S^2 + s^2)``.
"""

import math
from typing import Any

import pytest
import torch

from vidgen.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    GaussianDiffusion,
    ModelFn,
    dpm_solver_grid,
    make_beta_schedule,
    respace,
)

MU, S = 0.5, 0.8
N = 20_000


def _diffusion(
    prediction: str = "eps", learn_sigma: bool = False, schedule: str = "linear"
) -> GaussianDiffusion:
    return GaussianDiffusion(
        make_beta_schedule(schedule, 1000),
        prediction=prediction,
        learn_sigma=learn_sigma,
        loss="hybrid" if learn_sigma else "simple",
    )


def _oracle(base: GaussianDiffusion, variance_chain: GaussianDiffusion | None = None):
    """Optimal ``model_fn(x, t_original)`` for ``base.prediction``.

    With ``variance_chain`` (the respaced chain being sampled, learned sigma) it also returns the variance
    channel reproducing the exact reverse variance ``Var(x_{t-1} | x_t) = posterior_var + coef1^2 Var(x0 | x_t)``.
    """

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = (-1, *([1] * (x.dim() - 1)))
        alpha_bar = base.alphas_cumprod.to(x)[t].reshape(shape)
        a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
        denom = alpha_bar * S**2 + 1 - alpha_bar
        eps = s * (x - a * MU) / denom
        x0 = MU + a * S**2 * (x - a * MU) / denom
        out = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[base.prediction]
        if variance_chain is None:
            return out
        i = torch.searchsorted(variance_chain.timestep_map, t)
        coef1 = variance_chain.posterior_mean_coef1.to(x)[i].reshape(shape)
        true_var = (
            variance_chain.posterior_variance.to(x)[i].reshape(shape)
            + coef1**2 * S**2 * (1 - alpha_bar) / denom
        )
        min_log = variance_chain.posterior_log_variance_clipped.to(x)[i].reshape(shape)
        max_log = variance_chain.log_betas.to(x)[i].reshape(shape)
        value = 2 * (torch.log(true_var) - min_log) / (max_log - min_log) - 1
        value = torch.where(i.reshape(shape) == 0, -1.0, value)  # no noise is added at the last step
        return torch.cat([out, value.expand_as(out)], dim=1)

    return model_fn


def _draw(sampler, model_fn, seed: int = 0, n: int = N) -> torch.Tensor:
    return sampler.sample(
        model_fn, (n, 1), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def _assert_moments(x: torch.Tensor, std_rtol: float) -> None:
    mean_tol = 5 * S / math.sqrt(x.shape[0])
    assert abs(x.mean().item() - MU) < mean_tol, x.mean().item()
    assert abs(x.std().item() / S - 1) < std_rtol, x.std().item()


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_ddpm_with_exact_variance_recovers_the_data(prediction: str) -> None:
    base = _diffusion(prediction, learn_sigma=True)
    sampler = DDPMSampler(base, steps=100)
    x = _draw(sampler, _oracle(base, variance_chain=sampler.chain))
    _assert_moments(x, std_rtol=0.015)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_ddpm_fixed_small_variance(prediction: str) -> None:
    base = _diffusion(prediction)
    x = _draw(DDPMSampler(base, steps=100), _oracle(base))
    # Fixed-small variance omits coef1^2 Var(x0 | x_t): right mean, slightly too small spread at 100 steps.
    _assert_moments(x, std_rtol=0.05)
    assert x.std().item() < S


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ddim_and_dpm_solver_recover_the_data(prediction: str, schedule: str) -> None:
    base = _diffusion(prediction, schedule=schedule)
    _assert_moments(_draw(DDIMSampler(base, steps=50), _oracle(base)), std_rtol=0.04)
    _assert_moments(_draw(DPMSolverSampler(base, steps=20), _oracle(base)), std_rtol=0.03)
    # The ODE map is deterministic: many DPM-Solver++ steps match DDIM with many steps closely.
    fine_dpm = _draw(DPMSolverSampler(base, steps=200), _oracle(base), n=500)
    fine_ddim = _draw(DDIMSampler(base, steps=1000), _oracle(base), n=500)
    torch.testing.assert_close(fine_dpm, fine_ddim, rtol=0, atol=0.02)


def test_parameterisations_give_the_same_samples() -> None:
    samples = {}
    for prediction in ("eps", "v", "x0"):
        base = _diffusion(prediction)
        samples[prediction] = _draw(DPMSolverSampler(base, steps=20), _oracle(base), n=256)
    torch.testing.assert_close(samples["v"], samples["eps"], rtol=0, atol=1e-9)
    torch.testing.assert_close(samples["x0"], samples["eps"], rtol=0, atol=1e-9)


def test_ddim_eta0_is_deterministic_and_generator_reproducible() -> None:
    base = _diffusion()
    sampler = DDIMSampler(base, steps=50)
    noise = torch.randn((64, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    first = sampler.sample(_oracle(base), (64, 1), noise=noise)
    second = sampler.sample(_oracle(base), (64, 1), noise=noise, generator=torch.Generator().manual_seed(99))
    assert torch.equal(first, second)
    ddpm = DDPMSampler(base, steps=50)
    a = _draw(ddpm, _oracle(base), seed=5, n=64)
    b = _draw(ddpm, _oracle(base), seed=5, n=64)
    c = _draw(ddpm, _oracle(base), seed=6, n=64)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The start noise drawn from a generator is the first draw of that generator.
    expected_start = torch.randn((64, 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert torch.equal(sampler.sample(_oracle(base), (64, 1), noise=expected_start), first)


@pytest.mark.parametrize("steps", [1000, 100])
def test_ddim_eta1_equals_ddpm_fixed_small(steps: int) -> None:
    """With eta=1, DDIM's variance is the posterior variance and its mean the posterior mean (exact identity)."""
    base = _diffusion()
    ddpm = _draw(DDPMSampler(base, steps=steps), _oracle(base), seed=11, n=32)
    ddim = _draw(DDIMSampler(base, steps=steps, eta=1.0), _oracle(base), seed=11, n=32)
    torch.testing.assert_close(ddim, ddpm, rtol=0, atol=1e-10)


def test_learned_variance_at_posterior_value_equals_fixed_small() -> None:
    fixed = _diffusion()
    learned = _diffusion(learn_sigma=True)

    def with_min_variance(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = _oracle(fixed)(x, t)
        return torch.cat([out, -torch.ones_like(out)], dim=1)

    for sampler_cls, kwargs in ((DDPMSampler, {"steps": 50}), (DDIMSampler, {"steps": 20, "eta": 0.5})):
        a = _draw(sampler_cls(fixed, **kwargs), _oracle(fixed), seed=1, n=32)
        b = _draw(sampler_cls(learned, **kwargs), with_min_variance, seed=1, n=32)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    a = _draw(DPMSolverSampler(fixed, steps=10), _oracle(fixed), n=32)
    b = _draw(DPMSolverSampler(learned, steps=10), with_min_variance, n=32)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_dpm_solver_first_order_equals_ddim_on_the_same_timesteps() -> None:
    base = _diffusion("v")
    dpm = DPMSolverSampler(base, steps=12, order=1)
    chain = respace(base, dpm.indices.tolist())
    ddim = DDIMSampler(chain, steps=chain.num_timesteps)
    torch.testing.assert_close(
        _draw(dpm, _oracle(base), n=64), _draw(ddim, _oracle(base), n=64), rtol=0, atol=1e-10
    )


def test_model_gets_original_timesteps() -> None:
    base = _diffusion()
    for sampler, expected in (
        (DDPMSampler(base, steps="ddim4"), [750, 500, 250, 0]),
        (DDIMSampler(base, steps=4), [999, 666, 333, 0]),
        (DPMSolverSampler(base, steps=4, spacing="diffusers"), [999, 749, 500, 250]),
    ):
        seen: list[list[int]] = []

        def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(t.tolist())  # noqa: B023
            return torch.zeros_like(x)

        sampler.sample(model_fn, (2, 1, 2, 2, 2), generator=torch.Generator().manual_seed(0))
        assert seen == [[step, step] for step in expected]


def test_dpm_solver_grid() -> None:
    base = _diffusion()
    grid = dpm_solver_grid(base, 20)
    assert grid[0].item() == 999 and grid[-1].item() == 0 and len(grid) == 20
    assert bool((grid[1:] < grid[:-1]).all())
    lam = 0.5 * torch.log(base.alphas_cumprod / (1 - base.alphas_cumprod))[grid]
    gaps = lam[1:] - lam[:-1]
    assert gaps[:-3].std().item() < 0.1 * gaps.mean().item()  # uniform in log-SNR away from the integer floor
    assert len(set(dpm_solver_grid(base, 400).tolist())) == 400
    cosine = dpm_solver_grid(_diffusion(schedule="cosine"), 20)
    assert cosine[0].item() < 999 and bool((cosine[1:] < cosine[:-1]).all())
    with pytest.raises(ValueError, match="logsnr, diffusers"):
        dpm_solver_grid(base, 10, spacing="karras")


def test_progress_bar_does_not_change_samples() -> None:
    base = _diffusion()
    sampler = DDIMSampler(base, steps=10)
    assert torch.equal(
        sampler.sample(_oracle(base), (8, 1), generator=torch.Generator().manual_seed(0), progress=True),
        sampler.sample(_oracle(base), (8, 1), generator=torch.Generator().manual_seed(0)),
    )


def _diffusers_dpm_solver(
    base: GaussianDiffusion,
    ours: DPMSolverSampler,
    spacing: str,
    model_fn: ModelFn,
    noise: torch.Tensor,
    **config: object,
) -> torch.Tensor:
    """Samples of diffusers' ``DPMSolverMultistepScheduler`` (DPM-Solver++, its defaults unless ``config``
    sets them) from ``noise`` on ``ours``'s grid: its own default grid for ``spacing="diffusers"``, else
    ``ours.timesteps`` passed as custom timesteps."""
    diffusers = pytest.importorskip("diffusers")
    prediction_type = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}[base.prediction]
    scheduler = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=base.num_timesteps,
        trained_betas=base.betas.numpy(),
        algorithm_type="dpmsolver++",
        prediction_type=prediction_type,
        **{"solver_order": ours.order, **config},
    )
    if spacing == "diffusers":
        scheduler.set_timesteps(len(ours.indices))
    else:
        scheduler.set_timesteps(timesteps=ours.timesteps.tolist())
    assert scheduler.timesteps.tolist() == ours.timesteps.tolist()
    x = noise.clone()
    for t in scheduler.timesteps:
        x = scheduler.step(model_fn(x, t.expand(x.shape[0])), t, x).prev_sample
    return x


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("spacing", ["logsnr", "diffusers"])
@pytest.mark.parametrize("steps", [5, 10, 14, 20])
def test_dpm_solver_matches_diffusers(prediction: str, spacing: str, steps: int) -> None:
    """Same model, grid and start noise as diffusers' DPM-Solver++(2M) with its default settings, below and
    above its 15-step ``lower_order_final`` threshold (diffusers computes in float32, hence the tolerance)."""
    base = _diffusion(prediction)
    ours = DPMSolverSampler(base, steps=steps, order=2, spacing=spacing)
    model_fn = _oracle(base)
    noise = torch.randn((512, 1), generator=torch.Generator().manual_seed(0))
    expected = _diffusers_dpm_solver(base, ours, spacing, model_fn, noise)
    torch.testing.assert_close(ours.sample(model_fn, noise.shape, noise=noise), expected, rtol=0, atol=5e-5)
    # For order 2 diffusers' lower_order_final and euler_at_final only touch its final step, which the jump
    # to sigma = 0 (final_sigmas_type="zero") makes first order anyway.
    for config in ({"lower_order_final": False}, {"euler_at_final": True}):
        other = _diffusers_dpm_solver(base, ours, spacing, model_fn, noise, **config)
        torch.testing.assert_close(other, expected, rtol=0, atol=1e-6)


_DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def _with_variance_channels(base: GaussianDiffusion) -> ModelFn:
    """The oracle, plus (with ``learn_sigma``) variance values ``tanh(2x)`` spanning ``[-1, 1]``."""
    oracle = _oracle(base)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = oracle(x, t)
        return torch.cat([out, torch.tanh(2 * x)], dim=1) if base.learn_sigma else out

    return model_fn


def _diffusers_loop(
    scheduler: Any, model_fn: ModelFn, shape: tuple[int, int], seed: int, **step_kwargs: object
) -> torch.Tensor:
    """Run a diffusers scheduler whose timesteps are set, in float64 (its float32 ``alphas_cumprod`` replaced by
    the exact table): start noise and then every injected noise drawn from one generator, as our samplers do."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    for t in scheduler.timesteps:
        output = model_fn(x, t.expand(shape[0]))
        x = scheduler.step(output, t, x, generator=generator, **step_kwargs).prev_sample
    return x


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("clip_x0", [False, True])
@pytest.mark.parametrize("steps", [7, "ddim25"])
def test_ddpm_matches_diffusers(prediction: str, learn_sigma: bool, clip_x0: bool, steps: int | str) -> None:
    """The respaced ancestral chain equals diffusers' DDPMScheduler on the same timesteps, fixed-small or
    learned-range variance, with and without clipping, noise for noise."""
    diffusers = pytest.importorskip("diffusers")
    base = _diffusion(prediction, learn_sigma=learn_sigma)
    sampler = DDPMSampler(base, steps=steps, clip_x0=clip_x0)
    scheduler = diffusers.DDPMScheduler(
        num_train_timesteps=base.num_timesteps,
        trained_betas=base.betas.numpy(),
        prediction_type=_DIFFUSERS_PREDICTION[prediction],
        variance_type="learned_range" if learn_sigma else "fixed_small",
        clip_sample=clip_x0,
        clip_sample_range=1.0,
    )
    scheduler.set_timesteps(timesteps=sampler.chain.timestep_map.flip(0).tolist())
    scheduler.alphas_cumprod = base.alphas_cumprod.clone()
    model_fn = _with_variance_channels(base)
    expected = _diffusers_loop(scheduler, model_fn, (256, 1), seed=3)
    ours = _draw(sampler, model_fn, seed=3, n=256)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("clip_x0", [False, True])
@pytest.mark.parametrize("steps", [10, 25])
def test_ddim_matches_diffusers(prediction: str, learn_sigma: bool, clip_x0: bool, steps: int) -> None:
    """DDIM on the ``ddimN`` stride equals diffusers' DDIMScheduler ("leading" spacing) for eta 0, 0.5 and 1,
    with clipping (and eps recomputed from the clipped x0) or without, ignoring any variance channels."""
    diffusers = pytest.importorskip("diffusers")
    base = _diffusion(prediction, learn_sigma=learn_sigma)
    model_fn = _with_variance_channels(base)
    for eta in (0.0, 0.5, 1.0):
        sampler = DDIMSampler(base, steps=f"ddim{steps}", eta=eta, clip_x0=clip_x0)
        scheduler = diffusers.DDIMScheduler(
            num_train_timesteps=base.num_timesteps,
            trained_betas=base.betas.numpy(),
            prediction_type=_DIFFUSERS_PREDICTION[prediction],
            clip_sample=clip_x0,
            clip_sample_range=1.0,
        )
        scheduler.set_timesteps(steps)
        assert scheduler.timesteps.tolist() == sampler.chain.timestep_map.flip(0).tolist()
        scheduler.alphas_cumprod = base.alphas_cumprod.clone()

        def prediction_only(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model_fn(x, t)[:, : x.shape[1]]

        expected = _diffusers_loop(
            scheduler, prediction_only, (256, 1), seed=4, eta=eta, use_clipped_model_output=True
        )
        ours = _draw(sampler, model_fn, seed=4, n=256)
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)
