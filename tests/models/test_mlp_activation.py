"""model.mlp_activation: the MLP's GELU (DiT's tanh approximation or the exact erf one), and the fused AdamW
that optim.fused picks: the same functions as their references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vidgen.config import ConfigError
from vidgen.lit.module import adamw
from vidgen.models.latte import Latte
from vidgen.nn.mlp import Mlp


def _exact_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _tanh_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


@pytest.mark.parametrize(("activation", "formula"), [("gelu", _exact_gelu), ("gelu_tanh", _tanh_gelu)])
def test_mlp_applies_the_named_gelu(activation: str, formula) -> None:
    torch.manual_seed(0)
    mlp = Mlp(8, 16, activation).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64) * 3
    expected = mlp.fc2(formula(mlp.fc1(x)))
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)


def test_the_two_gelus_differ_by_less_than_5e_4_but_do_differ() -> None:
    x = torch.linspace(-8, 8, 100_001, dtype=torch.float64)
    gap = (_exact_gelu(x) - _tanh_gelu(x)).abs().max().item()
    assert 1e-5 < gap < 5e-4


def test_latte_threads_the_activation_to_every_block_and_keeps_the_state_dict() -> None:
    kwargs = dict(size="tiny", input_size=8, num_frames=4, in_channels=3, learn_sigma=False)
    torch.manual_seed(0)
    tanh = Latte(**kwargs)
    exact = Latte(**kwargs, mlp_activation="gelu")
    assert all(b.mlp.act.approximate == "tanh" for b in tanh.blocks)
    assert all(b.mlp.act.approximate == "none" for b in exact.blocks)
    exact.load_state_dict(tanh.state_dict())  # the same parameters: weights move between the two
    for p in tanh.parameters():  # adaLN-Zero and the final layer start at zero: randomise every layer
        nn.init.normal_(p, std=0.2)
    exact.load_state_dict(tanh.state_dict())
    x, t = torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 500])
    out_tanh, out_exact = tanh(x, t), exact(x, t)
    assert not torch.equal(out_tanh, out_exact)  # the switch reaches the computation
    torch.testing.assert_close(out_exact, out_tanh, rtol=0, atol=5e-2 * out_tanh.abs().max().item())


def test_unknown_activation_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.mlp_activation"):
        Latte(size="tiny", mlp_activation="relu")


def test_fused_adamw_takes_the_same_steps_as_the_default_loop() -> None:
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    settings = {"lr": 1e-2, "weight_decay": 0.01, "betas": (0.9, 0.99), "eps": 1e-8}
    fused = adamw(nets[0], {**settings, "fused": True})
    loop = adamw(nets[1], {**settings, "fused": False})
    assert fused.defaults["fused"] is True and not loop.defaults["fused"]
    x = torch.randn(16, 6)
    for _ in range(20):
        for net, optimizer in ((nets[0], fused), (nets[1], loop)):
            net(x).square().mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    start = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 3))
    for p_fused, p_loop in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(p_fused, p_loop, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(nets[0].parameters(), start.parameters(), strict=True))


def test_fused_adamw_falls_back_where_the_kernel_does_not_run() -> None:
    """A device without the fused kernel (here the meta device) takes PyTorch's default implementation."""
    assert adamw(nn.Linear(4, 4), {"lr": 1e-3, "fused": True}).defaults["fused"] is True
    assert not adamw(nn.Linear(4, 4, device="meta"), {"lr": 1e-3, "fused": True}).defaults["fused"]
