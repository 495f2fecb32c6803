"""The precision a sampler runs the denoiser in (``sampler.precision``): ``32-true`` (fp32 throughout, the
default and the papers' protocols) or ``bf16-mixed`` (the denoiser's matrix products in bf16 under autocast,
as in bf16-mixed training; the sampler's own arithmetic stays fp32, since
:func:`~vidgen.diffusion.guided_model_fn` hands it the denoiser's output in the sample's dtype).

On a CPU with bf16 matrix instructions the demo's DDPM sampling runs about 2.6x faster in bf16-mixed
(experiments/demo/README.md); on a CPU without them it runs far slower, so it warns there, naming the key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from vidgen.lit.cpu_precision import warn_if_slow_bf16

__all__ = ["SAMPLING_PRECISIONS", "sampling_autocast", "split_sampling_precision"]

SAMPLING_PRECISIONS = ("32-true", "bf16-mixed")


def split_sampling_precision(sampler_cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(precision, the rest of the sampler config)``: what :func:`sampling_autocast` takes, and what the
    sampler builders take. A config without the key (checkpoints from before it) samples in ``32-true``.

    Raises:
        ValueError: ``sampler.precision`` not one of :data:`SAMPLING_PRECISIONS`.
    """
    rest = dict(sampler_cfg)
    precision = rest.pop("precision", None) or "32-true"
    if precision not in SAMPLING_PRECISIONS:
        raise ValueError(f"sampler.precision: must be one of {SAMPLING_PRECISIONS}, got {precision!r}")
    return str(precision), rest


@contextmanager
def sampling_autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """Run the enclosed sampling in ``precision`` on ``device`` (bf16 autocast for ``bf16-mixed``; nothing for
    ``32-true``); warns once per call on a CPU without bf16 matrix instructions."""
    device_type = torch.device(device).type
    if precision == "32-true":
        yield
        return
    warn_if_slow_bf16(device_type, precision, key="sampler.precision")
    with torch.autocast(device_type, dtype=torch.bfloat16):
        yield
