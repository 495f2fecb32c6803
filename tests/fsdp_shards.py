"""Test helper: how much of a possibly FSDP-sharded model this process holds."""

from __future__ import annotations

from torch import nn


def local_numel(model: nn.Module, trainable_only: bool = True) -> int:
    """Parameters this process holds: the local shard of each DTensor, the whole of a plain tensor
    (only those with ``requires_grad`` when ``trainable_only``)."""
    from torch.distributed.tensor import DTensor

    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        total += p.to_local().numel() if isinstance(p, DTensor) else p.numel()
    return total
