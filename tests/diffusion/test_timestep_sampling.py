"""Training-time draws: ``uniform`` keeps the old stream bit for bit; ``low_discrepancy`` puts one time in every
``1/B`` stratum, keeps each sample's time uniform (so the expected loss is unchanged) and lowers the variance of
a batch mean."""

from __future__ import annotations

import pytest
import torch

from vidgen.diffusion import build_diffusion
from vidgen.diffusion.continuous import VDMDiffusion, build_vdm_diffusion
from vidgen.diffusion.respace import respace
from vidgen.diffusion.timestep_sampling import unit_times


def _chain(sampling: str, steps: int = 1000):
    return build_diffusion(
        "cosine", steps, prediction="v", learn_sigma=False, loss="simple", timestep_sampling=sampling
    )


def test_low_discrepancy_puts_one_time_in_every_stratum() -> None:
    generator = torch.Generator().manual_seed(0)
    for batch in (1, 2, 7, 8):
        for _ in range(50):
            t = unit_times(batch, "low_discrepancy", generator)
            assert t.dtype == torch.float64 and t.shape == (batch,)
            assert t.min().item() >= 0.0 and t.max().item() < 1.0
            strata = torch.sort((t * batch).floor().long()).values
            assert strata.tolist() == list(range(batch))
            gaps = torch.diff(torch.sort(t).values)
            torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / batch), rtol=0, atol=1e-12)


def test_each_sample_of_a_low_discrepancy_batch_is_uniform() -> None:
    """The marginal of every position is U[0, 1): the batch's expected loss equals the uniform draw's."""
    generator = torch.Generator().manual_seed(1)
    draws = torch.stack([unit_times(8, "low_discrepancy", generator) for _ in range(20_000)])
    for position in (0, 3, 7):
        column = draws[:, position]
        assert column.mean().item() == pytest.approx(0.5, abs=0.01)
        assert column.var().item() == pytest.approx(1 / 12, abs=0.003)
        counts = torch.histc(column, bins=10, min=0.0, max=1.0)
        assert (counts - 2000).abs().max().item() < 200  # each tenth holds 2000 +- 4.5 sigma


def test_low_discrepancy_lowers_the_variance_of_the_batch_mean_of_the_loss_weight() -> None:
    """A batch mean of a smooth function of t (here the chain's Min-SNR-5 weight of the v loss, which varies
    with t by 5x) has far lower variance with one draw per stratum than with independent draws."""
    weights = {}
    for sampling in ("uniform", "low_discrepancy"):
        chain = _chain(sampling)
        snr = chain.alphas_cumprod / (1 - chain.alphas_cumprod)
        weight = snr.clamp(max=5.0) / (snr + 1)
        generator = torch.Generator().manual_seed(2)
        means = torch.stack(
            [weight[chain.sample_timesteps(8, generator=generator)].mean() for _ in range(4000)]
        )
        weights[sampling] = means
    assert weights["uniform"].mean().item() == pytest.approx(
        weights["low_discrepancy"].mean().item(), abs=0.01
    )
    assert weights["low_discrepancy"].var().item() < 0.1 * weights["uniform"].var().item()


def test_discrete_chain_draws_one_step_per_stratum_and_uniform_keeps_randint() -> None:
    generator = torch.Generator().manual_seed(3)
    chain = _chain("low_discrepancy")
    for _ in range(100):
        t = chain.sample_timesteps(8, generator=generator)
        assert t.dtype == torch.int64 and t.min().item() >= 0 and t.max().item() <= 999
        assert torch.sort(t // 125).values.tolist() == list(range(8))
    a, b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(
        _chain("uniform").sample_timesteps(9, generator=a), torch.randint(0, 1000, (9,), generator=b)
    )
    assert torch.equal(torch.rand(3, generator=a), torch.rand(3, generator=b))  # the stream is where it was


def test_continuous_uniform_keeps_the_old_stream_and_low_discrepancy_stratifies() -> None:
    a, b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    t = VDMDiffusion().sample_timesteps(6, generator=a)
    assert torch.equal(t, torch.rand((6,), generator=b, dtype=torch.float64))
    ld = build_vdm_diffusion(prediction="v", timestep_sampling="low_discrepancy")
    t = ld.sample_timesteps(5, generator=a)
    assert t.dtype == torch.float64 and torch.sort((t * 5).floor().long()).values.tolist() == [0, 1, 2, 3, 4]


def test_respacing_keeps_the_draw_and_bad_names_fail() -> None:
    assert respace(_chain("low_discrepancy"), range(0, 1000, 10)).timestep_sampling == "low_discrepancy"
    with pytest.raises(ValueError, match="timestep_sampling 'sobol'"):
        _chain("sobol")
    with pytest.raises(ValueError, match="timestep_sampling 'sobol'"):
        VDMDiffusion(timestep_sampling="sobol")
