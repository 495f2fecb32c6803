"""The CPU's short-sequence attention path equals SDPA (values and gradients), and the elementwise
rewrites of the block (addcmul) equal the formulas they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidgen.nn.adaln import modulate
from vidgen.nn.spacetime import SHORT_SEQUENCE_ON_CPU, attend_sequences


@pytest.mark.parametrize("length", [1, 8, SHORT_SEQUENCE_ON_CPU, SHORT_SEQUENCE_ON_CPU + 1])
def test_short_sequence_attention_equals_sdpa_with_gradients(length: int) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 3, length, 24, requires_grad=True) for _ in range(3))
    weights = torch.randn(6, 3, length, 24)
    ours = attend_sequences(q, k, v)
    grads = torch.autograd.grad((ours * weights).sum(), (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v)
    expected = torch.autograd.grad((reference * weights).sum(), (q, k, v))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_modulate_is_x_times_one_plus_scale_plus_shift() -> None:
    torch.manual_seed(0)
    x, shift, scale = torch.randn(2, 3, 5, 8), torch.randn(2, 1, 1, 8), torch.randn(2, 1, 1, 8)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale) + shift)
