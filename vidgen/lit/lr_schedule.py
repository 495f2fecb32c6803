"""Learning-rate schedules of the AdamW optimizer (``optim.schedule``, ``optim.warmup_steps``,
``optim.min_lr_ratio``), stepped once per optimizer step.

* ``constant`` (the papers' DiT / Latte recipe): ``lr`` throughout, after an optional linear warm-up.
* ``cosine``: linear warm-up over ``warmup_steps``, then a half cosine from ``lr`` down to
  ``min_lr_ratio * lr`` at the run's last step (``trainer.max_steps``). Short runs gain the most: the
  annealed end averages the noise of the last steps much as the EMA does, without the EMA's lag.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("constant", "cosine")


def lr_multiplier(
    step: int, total_steps: int, schedule: str, warmup_steps: int, min_lr_ratio: float
) -> float:
    """The factor on ``optim.lr`` for optimizer step ``step`` (0-based) of ``total_steps``.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. ``cosine`` then goes from 1
    at the end of the warm-up to ``min_lr_ratio`` at step ``total_steps - 1`` (and stays there after).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {SCHEDULES}")
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit_length(module: Any) -> int | None:
    """Optimizer steps of the fit ``module`` is attached to (``trainer.estimated_stepping_batches``); None
    outside a fit (a benchmark calling ``configure_optimizers`` by hand)."""
    trainer = getattr(module, "_trainer", None)
    return None if trainer is None else int(trainer.estimated_stepping_batches)


def with_lr_schedule(
    optimizer: torch.optim.Optimizer, optim: dict[str, Any], total_steps: int | None
) -> torch.optim.Optimizer | dict[str, Any]:
    """``configure_optimizers``'s return value: the optimizer alone for a constant rate without warm-up or
    outside a fit (``total_steps`` None: there is no schedule to follow), else the optimizer and a per-step
    :class:`~torch.optim.lr_scheduler.LambdaLR` (saved in checkpoints, so a resumed run continues it)."""
    schedule = str(optim.get("schedule", "constant"))
    warmup = int(optim.get("warmup_steps", 0))
    min_ratio = float(optim.get("min_lr_ratio", 0.0))
    if (schedule == "constant" and warmup == 0) or total_steps is None:
        return optimizer
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total_steps, schedule, warmup, min_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
