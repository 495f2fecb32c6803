"""Linear layers whose CPU fp32 products run through oneDNN instead of MKL.

A Latte step on a CPU is its linear layers (README "Latte against its peers"). PyTorch's ``F.linear`` on a CPU
calls MKL's sgemm; oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel Inductor uses for
CPU linears) was 2-17% faster on the token x 384 products of Latte-S here. :class:`OneDNNLinear` is an
``nn.Linear`` (same parameters, same state dict) whose forward and input gradient run through oneDNN on CPU
fp32 tensors; the weight gradient ``grad^T @ x`` stays one MKL product. Anything else (CUDA, bf16 / fp16
autocast, other dtypes, a build without oneDNN) takes ``F.linear`` unchanged.

``use_onednn_linears(module)`` switches every plain ``nn.Linear`` inside a module in place (the
``model.linear_backend=onednn`` switch of the Latte configs).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LINEAR_BACKENDS", "OneDNNLinear", "onednn_linear_available", "use_onednn_linears"]

#: values of ``model.linear_backend``
LINEAR_BACKENDS = ("torch", "onednn")


@functools.cache
def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's CPU inner product (asked once: every forward checks it)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _inner_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ weight.T + bias`` by oneDNN: ``x`` ``(N, in)``, ``weight`` ``(out, in)`` -> ``(N, out)``."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDNNLinearFunction(torch.autograd.Function):
    """``y = x W^T + b`` over 2-D ``x`` ``(N, in)``; backward: ``dx = dy W`` (oneDNN), ``dW = dy^T x``,
    ``db = sum(dy)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _inner_product(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _inner_product(grad, weight.t().contiguous(), None)
        if ctx.needs_input_grad[1]:
            grad_w = grad.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(0)
        return grad_x, grad_w, grad_b


class OneDNNLinear(nn.Linear):
    """``nn.Linear`` computed by oneDNN on CPU fp32 (forward and input gradient); ``F.linear`` otherwise.

    Shapes as ``nn.Linear``: ``(..., in_features) -> (..., out_features)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._takes_onednn(x):
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        if not flat.is_contiguous():
            flat = flat.contiguous()
        return _OneDNNLinearFunction.apply(flat, self.weight, self.bias).reshape(*lead, self.out_features)

    def _takes_onednn(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.numel() > 0
            and not torch.is_autocast_enabled("cpu")
            and onednn_linear_available()
        )


def use_onednn_linears(module: nn.Module) -> int:
    """Make every plain ``nn.Linear`` inside ``module`` a :class:`OneDNNLinear` in place (parameters, state
    dict and hooks unchanged); subclasses of ``nn.Linear`` with their own forward are left alone. Returns the
    number switched."""
    switched = 0
    for child in module.modules():
        if type(child) is nn.Linear:
            child.__class__ = OneDNNLinear
            switched += 1
    return switched
