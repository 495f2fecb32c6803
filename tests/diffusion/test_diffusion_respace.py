"""Timestep spacing and respaced chains."""

import itertools

import pytest
import torch

from vidgen.diffusion import GaussianDiffusion, make_beta_schedule, respace, space_timesteps


def test_even_spacing() -> None:
    kept = space_timesteps(1000, 250)
    assert len(kept) == 250 and kept == sorted(set(kept))
    assert kept[0] == 0 and kept[-1] == 999
    gaps = {b - a for a, b in itertools.pairwise(kept)}
    assert gaps <= {4, 5}
    assert space_timesteps(1000, "250") == kept
    assert space_timesteps(1000, 1000) == list(range(1000))
    assert space_timesteps(1000, 1) == [0]
    # 999 / 20 = 49.95 lands on 499.5 at the middle; improved DDPM's accumulated position rounds it down.
    assert space_timesteps(1000, 21)[10] == 499


def test_sectioned_spacing() -> None:
    kept = space_timesteps(300, "10,15,20")
    assert len(kept) == 45
    first, second, third = kept[:10], kept[10:25], kept[25:]
    assert (first[0], first[-1]) == (0, 99)
    assert (second[0], second[-1]) == (100, 199)
    assert (third[0], third[-1]) == (200, 299)
    assert space_timesteps(300, [10, 15, 20]) == kept
    # Uneven split: 10 -> sections of 4, 3, 3.
    assert space_timesteps(10, [2, 2, 2]) == [0, 3, 4, 6, 7, 9]
    with pytest.raises(ValueError, match="section of 3"):
        space_timesteps(10, [2, 4, 2])


def test_ddim_stride_spacing() -> None:
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim25") == list(range(0, 1000, 40))
    assert space_timesteps(1000, "ddim1000") == list(range(1000))
    with pytest.raises(ValueError, match="stride"):
        space_timesteps(10, "ddim7")


def test_respaced_alpha_bar_and_timestep_map() -> None:
    base = GaussianDiffusion(
        make_beta_schedule("linear", 1000), prediction="v", learn_sigma=True, loss="hybrid"
    )
    kept = space_timesteps(1000, 100)
    chain = respace(base, kept)
    assert chain.num_timesteps == 100
    assert (chain.prediction, chain.learn_sigma, chain.loss_type) == ("v", True, "hybrid")
    torch.testing.assert_close(chain.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12, atol=0)
    assert chain.timestep_map.tolist() == kept
    # beta_i = 1 - ab_i / ab_{i-1}; its learned-variance upper end is log of the respaced beta.
    expected_betas = 1 - base.alphas_cumprod[kept[1:]] / base.alphas_cumprod[kept[:-1]]
    torch.testing.assert_close(chain.betas[1:], expected_betas, rtol=1e-12, atol=0)
    assert chain.betas[0].item() == pytest.approx(base.betas[0].item(), rel=1e-12)
    assert chain.betas[50].item() > 3 * base.betas[kept[50]].item()

    # Respacing a respaced chain composes the maps.
    inner = respace(chain, [0, 10, 99])
    assert inner.timestep_map.tolist() == [kept[0], kept[10], kept[99]]
    torch.testing.assert_close(
        inner.alphas_cumprod, base.alphas_cumprod[inner.timestep_map], rtol=1e-12, atol=0
    )


def test_respace_keeping_everything_is_identity() -> None:
    base = GaussianDiffusion(make_beta_schedule("cosine", 200))
    chain = respace(base, range(200))
    torch.testing.assert_close(chain.betas, base.betas, rtol=1e-12, atol=0)
    torch.testing.assert_close(chain.alphas_cumprod, base.alphas_cumprod, rtol=1e-12, atol=0)
    torch.testing.assert_close(chain.posterior_variance, base.posterior_variance, rtol=1e-9, atol=0)
    assert chain.timestep_map.tolist() == list(range(200))
    with pytest.raises(ValueError, match=r"\[0, 200\)"):
        respace(base, [0, 200])
