"""Classifier-free guidance: a sampler ``model_fn`` built from a conditional denoiser."""

from __future__ import annotations

from collections.abc import Callable

import torch

from vidgen.conditioning import Cond

DenoiserFn = Callable[[torch.Tensor, torch.Tensor, Cond], torch.Tensor]
"""``denoiser_fn(x, t, cond) -> out``: ``x`` ``(B, C, ...)``, ``t`` ``(B,)``, ``out`` ``(B, C or 2C, ...)``."""


def guided_model_fn(
    denoiser_fn: DenoiserFn,
    cond: Cond,
    null_cond: Cond,
    scale: float,
    learn_sigma: bool,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Build ``model_fn(x, t)`` applying classifier-free guidance with strength ``scale``.

    ``scale == 1`` returns the conditional output of a single forward pass. Otherwise one batched forward over
    ``[x, x]`` with ``cond.cat(null_cond)`` gives ``cond_out`` and ``uncond_out``, and the prediction channels
    become ``uncond + scale * (cond - uncond)``; with ``learn_sigma`` the last ``C`` (variance) channels are
    those of the conditional half, unchanged.

    Args:
        denoiser_fn: the conditional network.
        cond: condition for a batch of ``B``.
        null_cond: the "no condition" condition, also for ``B`` samples and with the same fields as ``cond``.
        scale: guidance scale (1 = plain conditional sampling, 0 = unconditional).
        learn_sigma: the output has ``2C`` channels, of which the last ``C`` are variance values.

    Returns:
        ``model_fn(x, t) -> out`` with ``x`` ``(B, C, ...)``, ``t`` ``(B,)`` and ``out`` shaped like the
        denoiser's output, in ``x``'s dtype (a denoiser under bf16 autocast returns bf16: the guidance and the
        sampler's arithmetic stay in the sample's precision).
    """
    if scale == 1:

        def conditional(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return denoiser_fn(x, t, cond).to(x.dtype)

        return conditional

    both = cond.cat(null_cond)

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = denoiser_fn(torch.cat([x, x], dim=0), torch.cat([t, t], dim=0), both).to(x.dtype)
        cond_out, uncond_out = out.chunk(2, dim=0)
        channels = x.shape[1] if learn_sigma else out.shape[1]
        cond_pred, uncond_pred = cond_out[:, :channels], uncond_out[:, :channels]
        guided_pred = uncond_pred + scale * (cond_pred - uncond_pred)
        if not learn_sigma:
            return guided_pred
        return torch.cat([guided_pred, cond_out[:, channels:]], dim=1)

    return guided
