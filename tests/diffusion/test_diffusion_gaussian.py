"""GaussianDiffusion: forward process, posterior, model posterior, likelihood terms and training losses."""

import math

import pytest
import scipy.integrate
import torch

from vidgen.diffusion import (
    GaussianDiffusion,
    discretized_gaussian_log_likelihood,
    make_beta_schedule,
    mean_flat,
    normal_kl,
    respace,
)

T = 1000


def _diffusion(**kwargs: object) -> GaussianDiffusion:
    return GaussianDiffusion(make_beta_schedule("linear", T), **kwargs)


def _closed_form_posterior(betas: torch.Tensor, t: int) -> tuple[float, float, float]:
    """(coef on x0, coef on x_t, variance) of q(x_{t-1} | x_t, x0), Ho et al. eq. 7, by explicit products."""
    alpha_bar = 1.0
    for beta in betas[: t + 1].tolist():
        alpha_bar *= 1.0 - beta
    alpha_bar_prev = alpha_bar / (1.0 - betas[t].item())
    beta = betas[t].item()
    coef_x0 = math.sqrt(alpha_bar_prev) * beta / (1.0 - alpha_bar)
    coef_xt = math.sqrt(1.0 - beta) * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    variance = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * beta
    return coef_x0, coef_xt, variance


def test_q_sample_moments() -> None:
    diffusion = _diffusion()
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0_values = torch.tensor([-0.8, 0.3, 1.0], dtype=torch.float64)
    for step in (0, 100, 500, 999):
        x0 = x0_values.reshape(1, 3, 1).expand(n, 3, 1)
        t = torch.full((n,), step, dtype=torch.int64)
        noise = torch.randn(x0.shape, generator=g, dtype=torch.float64)
        x_t = diffusion.q_sample(x0, t, noise)
        alpha_bar = diffusion.alphas_cumprod[step].item()
        std_err = math.sqrt((1 - alpha_bar) / n)
        torch.testing.assert_close(
            x_t.mean(0).flatten(), math.sqrt(alpha_bar) * x0_values, rtol=0, atol=5 * std_err
        )
        variance = x_t.var(0).flatten()
        torch.testing.assert_close(variance, torch.full_like(variance, 1 - alpha_bar), rtol=0.02, atol=0)
        mean, var, log_var = diffusion.q_mean_variance(x0[:1], t[:1])
        torch.testing.assert_close(mean.flatten(), math.sqrt(alpha_bar) * x0_values)
        assert var.item() == pytest.approx(1 - alpha_bar, rel=1e-12)
        assert log_var.item() == pytest.approx(math.log(1 - alpha_bar), rel=1e-12)


def test_posterior_matches_closed_form() -> None:
    diffusion = _diffusion()
    g = torch.Generator().manual_seed(2)
    steps = [0, 1, 2, 10, 500, 998, 999]
    shape = (len(steps), 2, 3, 4, 4)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    x_t = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor(steps)
    mean, var, log_var = diffusion.q_posterior_mean_variance(x0, x_t, t)
    assert mean.shape == shape and var.shape == (len(steps), 1, 1, 1, 1)
    for row, step in enumerate(steps):
        coef_x0, coef_xt, variance = _closed_form_posterior(diffusion.betas, step)
        torch.testing.assert_close(mean[row], coef_x0 * x0[row] + coef_xt * x_t[row], rtol=1e-10, atol=1e-12)
        assert var[row].item() == pytest.approx(variance, rel=1e-10, abs=1e-300)
        clipped = variance if step > 0 else _closed_form_posterior(diffusion.betas, 1)[2]
        assert log_var[row].item() == pytest.approx(math.log(clipped), rel=1e-10)
    assert var[0].item() == 0.0


def test_p_mean_variance_fixed_and_learned() -> None:
    g = torch.Generator().manual_seed(3)
    shape = (4, 2, 3, 4)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 5, 300, 999])
    fixed = _diffusion()
    x_t = fixed.q_sample(x0, t, noise)
    true_mean, true_var, true_log_var = fixed.q_posterior_mean_variance(x0, x_t, t)

    out = fixed.p_mean_variance(noise, x_t, t)
    torch.testing.assert_close(out["mean"], true_mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(out["variance"], true_var.expand(shape))
    torch.testing.assert_close(out["log_variance"], true_log_var.expand(shape))
    torch.testing.assert_close(out["pred_x0"], x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(out["pred_eps"], noise)

    learned = _diffusion(learn_sigma=True, loss="hybrid")
    log_beta = torch.log(learned.betas[t]).reshape(-1, 1, 1, 1)
    for value, expected in ((-1.0, true_log_var), (1.0, log_beta), (0.0, 0.5 * (true_log_var + log_beta))):
        out = learned.p_mean_variance(torch.cat([noise, torch.full_like(noise, value)], 1), x_t, t)
        torch.testing.assert_close(out["log_variance"], expected.expand(shape), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(out["variance"], out["log_variance"].exp())
        torch.testing.assert_close(out["mean"], true_mean, rtol=0, atol=1e-9)

    with pytest.raises(ValueError, match="channels"):
        learned.p_mean_variance(noise, x_t, t)


def test_clip_x0_keeps_eps_consistent() -> None:
    diffusion = _diffusion()
    x_t = torch.full((2, 1, 3), 3.0, dtype=torch.float64)
    t = torch.tensor([10, 900])
    out = diffusion.p_mean_variance(torch.zeros_like(x_t), x_t, t, clip_x0=True)
    assert out["pred_x0"].abs().max().item() == 1.0
    a = diffusion.sqrt_alphas_cumprod[t].reshape(-1, 1, 1)
    s = diffusion.sqrt_one_minus_alphas_cumprod[t].reshape(-1, 1, 1)
    torch.testing.assert_close(a * out["pred_x0"] + s * out["pred_eps"], x_t)


def test_normal_kl_and_discretized_likelihood() -> None:
    g = torch.Generator().manual_seed(4)
    m1, m2 = torch.randn(2, 50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(2, 50, generator=g, dtype=torch.float64)
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()), torch.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), reference)
    assert normal_kl(m1, lv1, m1, lv1).abs().max().item() < 1e-15

    # The 256 bin probabilities sum to one for any mean / scale, including far in the tails.
    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in ((0.0, math.log(0.1)), (0.37, math.log(0.003)), (0.9, math.log(2.0)), (-3.0, 0.0)):
        log_probs = discretized_gaussian_log_likelihood(grid, torch.tensor(mean), torch.tensor(log_scale))
        assert bool((log_probs <= 0).all())
        assert log_probs.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    assert mean_flat(torch.ones(3, 2, 5)).shape == (3,)

    # Far in a tail (here 40 standard deviations) float32 still gives a finite value and gradient.
    means = torch.tensor([0.5, -0.5, 0.5], requires_grad=True)
    x = torch.tensor([0.1, 0.3, -1.0])
    log_probs = discretized_gaussian_log_likelihood(x, means, torch.full((3,), math.log(0.01)))
    (grad,) = torch.autograd.grad(log_probs.sum(), means)
    assert bool(torch.isfinite(log_probs).all()) and bool((log_probs < -700).all())
    assert bool(torch.isfinite(grad).all()) and bool((grad.abs() > 1e3).all())
    # Reference by quadrature of the standard normal density over the bin, scaled by its value at the top.
    hi, lo = (0.1 - 0.5 + 1 / 255) / 0.01, (0.1 - 0.5 - 1 / 255) / 0.01
    scaled_mass, _ = scipy.integrate.quad(lambda z: math.exp(-0.5 * (z * z - hi * hi)), lo, hi)
    expected = math.log(scaled_mass) - 0.5 * hi * hi - 0.5 * math.log(2 * math.pi)
    assert log_probs[0].item() == pytest.approx(expected, rel=1e-5)


def _fixed_output_model(output: torch.Tensor, seen: list[torch.Tensor] | None = None):
    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if seen is not None:
            seen.append(t)
        return output

    return model_fn


def _true_model(diffusion: GaussianDiffusion, x0: torch.Tensor, noise: torch.Tensor, var_value: float | None):
    """A model returning exactly its target (noise / x0 / v) plus constant variance channels."""

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = diffusion.sqrt_alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        s = diffusion.sqrt_one_minus_alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        target = {"eps": noise, "x0": x0, "v": a * noise - s * x0}[diffusion.prediction]
        if var_value is None:
            return target
        return torch.cat([target, torch.full_like(target, var_value)], 1)

    return model_fn


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_vb_zero_for_true_posterior_and_hybrid_is_sum(prediction: str) -> None:
    diffusion = _diffusion(prediction=prediction, learn_sigma=True, loss="hybrid")
    g = torch.Generator().manual_seed(5)
    shape = (6, 2, 2, 4, 4)  # (B, C, F, H, W)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 50, 400, 800, 999])
    terms = diffusion.training_losses(_true_model(diffusion, x0, noise, -1.0), x0, t, noise)
    assert set(terms) == {"loss", "mse", "vb"}
    assert all(v.shape == (6,) for v in terms.values())
    assert terms["mse"].abs().max().item() < 1e-20
    assert terms["vb"].abs().max().item() < 1e-6
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])

    # A wrong model: vb >= 0 (KL and NLL), mse > 0, loss still the sum; t=0 gives the decoder NLL.
    wrong = torch.randn((6, 4, 2, 4, 4), generator=g, dtype=torch.float64).clamp(-1, 1)
    t = torch.tensor([0, 0, 3, 100, 700, 999])
    terms = diffusion.training_losses(_fixed_output_model(wrong), x0, t, noise)
    assert bool((terms["vb"] >= 0).all()) and bool((terms["mse"] > 0).all())
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    assert bool((terms["vb"][:2] > 0.5).all())  # a random decoder costs many bits per dim


def test_vb_gradient_reaches_only_the_variance_channels() -> None:
    diffusion = _diffusion(learn_sigma=True, loss="hybrid")
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand((3, 2, 4, 4), generator=g) * 2 - 1
    output = torch.randn((3, 4, 4, 4), generator=g).requires_grad_(True)
    t = torch.tensor([0, 10, 500])
    noise = torch.randn(x0.shape, generator=g)
    terms = diffusion.training_losses(_fixed_output_model(output), x0, t, noise)
    (grad_vb,) = torch.autograd.grad(terms["vb"].sum(), output, retain_graph=True)
    assert grad_vb[:, :2].abs().max().item() == 0.0
    assert grad_vb[:, 2:].abs().min().item() > 0.0
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), output)
    assert grad_mse[:, 2:].abs().max().item() == 0.0
    assert grad_mse[:, :2].abs().max().item() > 0.0


def test_simple_loss_targets_and_keys() -> None:
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn((4, 3, 2, 2), generator=g, dtype=torch.float64)
    noise = torch.randn((4, 3, 2, 2), generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 500, 999])
    for prediction in ("eps", "v", "x0"):
        diffusion = _diffusion(prediction=prediction)
        terms = diffusion.training_losses(_true_model(diffusion, x0, noise, None), x0, t, noise)
        assert set(terms) == {"loss", "mse"}
        assert terms["loss"].abs().max().item() < 1e-20
        # A zero prediction costs exactly the mean squared target.
        zero = diffusion.training_losses(_fixed_output_model(torch.zeros_like(x0)), x0, t, noise)
        target = _true_model(diffusion, x0, noise, None)(x0, t)
        torch.testing.assert_close(zero["loss"], (target**2).mean((1, 2, 3)))


def test_argument_validation() -> None:
    betas = make_beta_schedule("linear", 100)
    with pytest.raises(ValueError, match="learn_sigma"):
        GaussianDiffusion(betas, loss="hybrid", learn_sigma=False)
    # The simple loss never trains learned variance channels: refused, naming both arguments and the fix.
    with pytest.raises(ValueError, match="learn_sigma=True with loss='simple'") as info:
        GaussianDiffusion(betas, loss="simple", learn_sigma=True)
    assert "loss='hybrid' or learn_sigma=False" in str(info.value)
    with pytest.raises(ValueError, match="learn_sigma=True with loss='simple'"):
        GaussianDiffusion(betas, learn_sigma=True)  # the default loss is "simple"
    with pytest.raises(ValueError, match="eps, v, x0"):
        GaussianDiffusion(betas, prediction="score")
    with pytest.raises(ValueError, match="simple, hybrid"):
        GaussianDiffusion(betas, loss="l1")
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="timestep_map"):
        GaussianDiffusion(betas, timestep_map=torch.arange(5))


def test_model_receives_original_timesteps() -> None:
    base = _diffusion()
    kept = [0, 10, 250, 999]
    chain = respace(base, kept)
    seen: list[torch.Tensor] = []
    x0 = torch.zeros((4, 1, 2))
    chain.training_losses(_fixed_output_model(torch.zeros_like(x0), seen), x0, torch.tensor([3, 2, 1, 0]))
    assert seen[0].tolist() == [999, 250, 10, 0]
    assert seen[0].dtype == torch.int64
    assert chain.wrap_model(lambda x, t: t.double())(x0, torch.tensor([1, 1, 2, 3])).tolist() == [
        10,
        10,
        250,
        999,
    ]


def test_sample_timesteps_range_and_reproducible() -> None:
    diffusion = _diffusion()
    a = diffusion.sample_timesteps(4096, generator=torch.Generator().manual_seed(0))
    b = diffusion.sample_timesteps(4096, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.int64
    assert a.min().item() >= 0 and a.max().item() <= T - 1 and a.unique().numel() > 900
