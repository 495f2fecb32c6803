"""How a training batch draws its diffusion times.

``uniform``: every sample's time independently uniform (DDPM, DiT, Latte). ``low_discrepancy``: one uniform
offset ``u`` per batch and sample ``i`` of ``B`` at ``(u + i / B) mod 1`` (Kingma et al. 2021, "Variational
Diffusion Models", App. I.1): each sample's time is still uniform on its own, so the expected loss is the
same, but the batch covers the noise levels evenly (one time in every ``1/B`` stratum), which lowers the
variance of the batch's loss and gradient for small batches.
"""

from __future__ import annotations

import torch

__all__ = ["TIMESTEP_SAMPLINGS", "check_timestep_sampling", "unit_times"]

TIMESTEP_SAMPLINGS = ("uniform", "low_discrepancy")


def check_timestep_sampling(method: str) -> str:
    """``method`` if it is one of :data:`TIMESTEP_SAMPLINGS`; raises ``ValueError`` naming the allowed ones."""
    if method not in TIMESTEP_SAMPLINGS:
        raise ValueError(f"unknown timestep_sampling {method!r}; allowed: {', '.join(TIMESTEP_SAMPLINGS)}")
    return method


def unit_times(
    batch_size: int, method: str, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``(batch_size,)`` float64 times in ``[0, 1)`` drawn by ``method``, on ``device`` (the generator's).

    ``uniform``: ``batch_size`` independent uniforms. ``low_discrepancy``: ``(u + i / batch_size) mod 1`` for
    ``i = 0..batch_size-1`` with one uniform ``u``: one time in each stratum ``[i / B, (i + 1) / B)``.
    """
    check_timestep_sampling(method)
    if method == "uniform":
        return torch.rand((batch_size,), generator=generator, device=device, dtype=torch.float64)
    offset = torch.rand((1,), generator=generator, device=device, dtype=torch.float64)
    strata = torch.arange(batch_size, device=device, dtype=torch.float64) / batch_size
    return torch.remainder(offset + strata, 1.0)
