"""The interface every conditioner implements (:class:`Conditioner`): a leaf module, so the conditioners and
the models that take them import it without importing one another."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidgen.conditioning.cond import Cond

__all__ = ["Conditioner"]


class Conditioner(nn.Module):
    """Base interface.

    * ``forward(batch, train, generator)`` -> :class:`Cond` for a training/validation batch; in training,
      each sample's condition is replaced by the null condition with probability ``drop_prob``.
    * ``null(n, device)`` -> the null condition for ``n`` samples (classifier-free guidance).
    * ``for_sampling(n, device, labels=None, captions=None)`` -> the condition for ``n`` generated samples.
    """

    num_classes: int = 0
    drop_prob: float = 0.0

    @property
    def supports_guidance(self) -> bool:
        """Whether a null condition exists (the model was trained with condition dropout)."""
        return False

    def forward(
        self, batch: dict[str, Any], train: bool = False, generator: torch.Generator | None = None
    ) -> Cond:
        raise NotImplementedError

    def null(self, n: int, device: torch.device | str = "cpu") -> Cond:
        raise NotImplementedError

    def for_sampling(
        self,
        n: int,
        device: torch.device | str = "cpu",
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
    ) -> Cond:
        raise NotImplementedError
