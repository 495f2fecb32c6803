"""Classifier-free guidance on a tiny deterministic fake denoiser."""

import pytest
import torch

from vidgen.conditioning import Cond
from vidgen.diffusion import guided_model_fn

NUM_CLASSES = 4


class FakeDenoiser:
    """``out = [x * (1 + label) + t / 1000, variance = tanh(label - 2) + 0 * x]``; counts its calls."""

    def __init__(self, learn_sigma: bool) -> None:
        self.learn_sigma = learn_sigma
        self.batch_sizes: list[int] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        shape = (-1, *([1] * (x.dim() - 1)))
        labels = cond.labels.to(x.dtype).reshape(shape)
        pred = x * (1 + labels) + t.to(x.dtype).reshape(shape) / 1000
        if not self.learn_sigma:
            return pred
        return torch.cat([pred, torch.tanh(labels - 2).expand_as(x) + 0.01 * x], dim=1)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, Cond, Cond]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, 2, 2, 4, 4), generator=g)
    t = torch.tensor([10, 500, 999])
    cond = Cond(labels=torch.tensor([0, 1, 3]))
    null = Cond(labels=torch.full((3,), NUM_CLASSES))
    return x, t, cond, null


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_scale_one_is_the_conditional_output_in_one_pass(learn_sigma: bool) -> None:
    x, t, cond, null = _inputs()
    denoiser = FakeDenoiser(learn_sigma)
    out = guided_model_fn(denoiser, cond, null, 1.0, learn_sigma)(x, t)
    assert denoiser.batch_sizes == [3]
    assert torch.equal(out, FakeDenoiser(learn_sigma)(x, t, cond))


@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("scale", [0.0, 4.0, 7.5])
def test_guided_prediction_and_variance_channels(learn_sigma: bool, scale: float) -> None:
    x, t, cond, null = _inputs()
    denoiser = FakeDenoiser(learn_sigma)
    out = guided_model_fn(denoiser, cond, null, scale, learn_sigma)(x, t)
    assert denoiser.batch_sizes == [6]  # one batched forward over [x, x]

    reference = FakeDenoiser(learn_sigma)
    cond_out, uncond_out = reference(x, t, cond), reference(x, t, null)
    channels = x.shape[1]
    expected = uncond_out[:, :channels] + scale * (cond_out[:, :channels] - uncond_out[:, :channels])
    torch.testing.assert_close(out[:, :channels], expected)
    if learn_sigma:
        assert out.shape == cond_out.shape
        assert torch.equal(out[:, channels:], cond_out[:, channels:])
        assert not torch.equal(out[:, channels:], uncond_out[:, channels:])
    else:
        assert out.shape == x.shape
