"""model.linear_backend=onednn: oneDNN's CPU inner product gives nn.Linear's outputs and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.models.latte import Latte
from vidgen.nn.onednn_linear import OneDNNLinear, onednn_linear_available, use_onednn_linears

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="this PyTorch build has no oneDNN")


@pytest.mark.parametrize("bias", [True, False])
def test_outputs_and_gradients_equal_nn_linear(bias: bool) -> None:
    torch.manual_seed(0)
    reference = nn.Linear(48, 80, bias=bias)
    onednn = nn.Linear(48, 80, bias=bias)
    onednn.load_state_dict(reference.state_dict())
    assert use_onednn_linears(onednn) == 1 and type(onednn) is OneDNNLinear
    x = torch.randn(3, 20, 96)[..., ::2]  # (3, 20, 48), not contiguous
    x_ref, x_one = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_one = reference(x_ref), onednn(x_one)
    assert y_one.shape == (3, 20, 80)
    torch.testing.assert_close(y_one, y_ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(y_ref)
    y_ref.backward(grad)
    y_one.backward(grad)
    torch.testing.assert_close(x_one.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(onednn.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-4)


def test_autocast_and_other_dtypes_take_f_linear() -> None:
    layer = nn.Linear(16, 8)
    use_onednn_linears(layer)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16  # autocast's bf16 linear, not the fp32 oneDNN path
    torch.testing.assert_close(
        layer.double()(x.double()), nn.functional.linear(x.double(), layer.weight, layer.bias)
    )


def test_latte_on_onednn_is_latte_on_torch_with_the_same_weights() -> None:
    kwargs = dict(size="tiny", depth=2, hidden_size=32, num_heads=2, in_channels=3, input_size=8, num_frames=4,
                  num_classes=3, learn_sigma=True)  # fmt: skip
    torch.manual_seed(0)
    reference = Latte(**kwargs)
    with torch.no_grad():  # adaLN and the final layer start at zero: randomise everything first
        for parameter in reference.parameters():
            parameter.normal_(0, 0.2)
    onednn = Latte(**kwargs, linear_backend="onednn")
    onednn.load_state_dict(reference.state_dict())
    assert sum(type(m) is OneDNNLinear for m in onednn.modules()) > 10
    assert not any(type(m) is OneDNNLinear for m in reference.modules())
    x = torch.randn(2, 3, 4, 8, 8)  # (B, C, F, H, W)
    t = torch.tensor([10, 700])
    cond = Cond(labels=torch.tensor([0, 2]))
    out_ref, out_one = reference(x, t, cond), onednn(x, t, cond)
    torch.testing.assert_close(out_one, out_ref, rtol=1e-4, atol=1e-4)
    out_ref.square().mean().backward()
    out_one.square().mean().backward()
    for (name, mine), theirs in zip(onednn.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_an_unknown_backend_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.linear_backend"):
        Latte(size="tiny", linear_backend="cublas")
