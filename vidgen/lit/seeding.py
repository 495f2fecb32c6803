"""Per-step random streams: the noise, timesteps and condition dropout of training step ``k`` depend only on
``(seed, k, rank)``, so a resumed run draws exactly what an uninterrupted one would have drawn."""

from __future__ import annotations

import torch

_MASK = (1 << 63) - 1


def mix_seed(*parts: int) -> int:
    """Combine integers into one 63-bit seed (splitmix64-style mixing; distinct tuples -> distinct streams)."""
    state = 0x9E3779B97F4A7C15
    for part in parts:
        state = (state ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 31
    return state & _MASK


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """A CPU generator for training step ``step`` of process ``rank`` (``stream`` separates uses)."""
    return torch.Generator().manual_seed(mix_seed(seed, step, rank, stream))
