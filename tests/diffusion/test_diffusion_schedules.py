"""Beta schedules: lengths, end points, monotonicity, closed forms and agreement with diffusers."""

import math

import pytest
import torch

from vidgen.diffusion import BETA_SCHEDULES, cosine_alpha_bar, make_beta_schedule


@pytest.mark.parametrize("kind", BETA_SCHEDULES)
@pytest.mark.parametrize("num_timesteps", [1000, 250])
def test_length_dtype_range_and_monotonic(kind: str, num_timesteps: int) -> None:
    betas = make_beta_schedule(kind, num_timesteps)
    assert betas.shape == (num_timesteps,)
    assert betas.dtype == torch.float64
    assert bool((betas > 0).all()) and bool((betas < 1).all())
    assert bool((betas[1:] >= betas[:-1]).all())
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    assert bool((alphas_cumprod[1:] < alphas_cumprod[:-1]).all())


def test_linear_end_points() -> None:
    betas = make_beta_schedule("linear", 1000)
    assert betas[0].item() == 1e-4
    assert betas[-1].item() == pytest.approx(0.02, rel=1e-15)
    steps = betas[1:] - betas[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=0, atol=1e-15)


def test_linear_rescales_for_other_lengths_and_overrides() -> None:
    betas = make_beta_schedule("linear", 250)
    assert betas[0].item() == pytest.approx(4e-4, rel=1e-14)
    assert betas[-1].item() == pytest.approx(0.08, rel=1e-14)
    custom = make_beta_schedule("linear", 100, beta_start=1e-3, beta_end=0.05)
    assert custom[0].item() == pytest.approx(1e-3, rel=1e-14)
    assert custom[-1].item() == pytest.approx(0.05, rel=1e-14)


def test_cosine_alpha_bar_matches_closed_form() -> None:
    num_timesteps = 1000
    betas = make_beta_schedule("cosine", num_timesteps)
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    u = torch.arange(1, num_timesteps + 1, dtype=torch.float64) / num_timesteps
    expected = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    unclipped = betas < 0.999
    assert int((~unclipped).sum()) <= 2  # only the very last steps hit the cap
    first_clipped = int(unclipped.sum())
    torch.testing.assert_close(
        alphas_cumprod[:first_clipped], expected[:first_clipped], rtol=1e-10, atol=1e-14
    )
    assert betas.max().item() == 0.999
    assert cosine_alpha_bar(torch.zeros((), dtype=torch.float64)).item() == pytest.approx(
        math.cos(0.008 / 1.008 * math.pi / 2) ** 2, rel=1e-15
    )


def test_scaled_linear_matches_diffusers() -> None:
    diffusers = pytest.importorskip("diffusers")
    reference = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    ).betas
    ours = make_beta_schedule("scaled_linear", 1000)
    torch.testing.assert_close(ours, reference.double(), rtol=2e-6, atol=0)
    assert ours[0].item() == pytest.approx(0.00085, rel=1e-14)
    assert ours[-1].item() == pytest.approx(0.012, rel=1e-14)


def test_unknown_kind_lists_allowed() -> None:
    with pytest.raises(ValueError, match="linear, cosine, scaled_linear"):
        make_beta_schedule("quadratic")
