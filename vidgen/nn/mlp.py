"""The transformer's feed-forward sub-layer."""

from __future__ import annotations

import torch
from torch import nn

#: values of ``model.mlp_activation``: the GELU of the MLP, and its ``nn.GELU(approximate=...)`` argument.
#: ``gelu_tanh`` is DiT's / Latte's (timm's ``approx_gelu``); ``gelu`` is the exact (erf) GELU, the same
#: function to within 5e-4 and 2x cheaper forward + backward on a CPU without AVX-512 (the tanh kernel is the
#: slow one there)
MLP_ACTIVATIONS = {"gelu_tanh": "tanh", "gelu": "none"}


class Mlp(nn.Module):
    """``fc1 -> GELU -> fc2`` (parameter names as timm's / DiT's ``Mlp``).

    Args:
        dim: input and output width ``D``.
        hidden_dim: width of the hidden layer.
        activation: a key of :data:`MLP_ACTIVATIONS` (``gelu_tanh``: the reference's tanh approximation).
    """

    def __init__(self, dim: int, hidden_dim: int, activation: str = "gelu_tanh") -> None:
        super().__init__()
        if activation not in MLP_ACTIVATIONS:
            raise ValueError(
                f"unknown MLP activation {activation!r}; choose one of {', '.join(MLP_ACTIVATIONS)}"
            )
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate=MLP_ACTIVATIONS[activation])
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim) -> (..., dim)``."""
        return self.fc2(self.act(self.fc1(x)))
