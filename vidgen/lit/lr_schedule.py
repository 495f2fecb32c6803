"""Learning-rate schedules of the AdamW optimizer (``optim.schedule``, ``optim.warmup_steps``,
``optim.min_lr_ratio``), stepped once per optimizer step.

* ``constant`` (the papers' DiT / Latte recipe): ``lr`` throughout, after an optional linear warm-up.
* ``cosine``: linear warm-up over ``warmup_steps``, then a half cosine from ``lr`` down to
  ``min_lr_ratio * lr`` at the run's last step (``trainer.max_steps``). Short runs gain the most: the
  annealed end averages the noise of the last steps much as the EMA does, without the EMA's lag.

``optim.schedule_over`` says what the cosine runs over: ``steps`` (``trainer.max_steps``, above), ``time``,
the fraction of the wall-clock budget ``trainer.max_time`` spent (Lightning's Timer; rank 0's clock for every
rank), for a fit that trains as many steps as fit in a budget: the rate reaches its end value as the time
runs out, whatever the machine's speed; or ``auto`` (the demo recipe's): ``time`` when ``trainer.max_time``
is set, ``steps`` when it is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

SCHEDULES = ("constant", "cosine")
SCHEDULE_CLOCKS = ("steps", "time", "auto")


def lr_multiplier(
    step: int,
    total_steps: int,
    schedule: str,
    warmup_steps: int,
    min_lr_ratio: float,
    progress: float | None = None,
) -> float:
    """The factor on ``optim.lr`` for optimizer step ``step`` (0-based) of ``total_steps``.

    Warm-up: ``(step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. ``cosine`` then goes from 1
    at the end of the warm-up to ``min_lr_ratio`` at step ``total_steps - 1`` (and stays there after); given
    ``progress`` (the fraction of a wall-clock budget spent, 0 to 1) it goes from 1 to ``min_lr_ratio`` over
    that fraction instead, and ``total_steps`` is not used.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {SCHEDULES}")
    if progress is None:
        span = max(1, total_steps - 1 - warmup_steps)
        progress = (step - warmup_steps) / span
    progress = min(1.0, max(0.0, progress))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def budget_progress(trainer: Any) -> Callable[[], float]:
    """``progress() -> float``: the fraction of ``trainer.max_time`` spent so far (0 before the fit starts,
    1 at the budget), read from the trainer's :class:`~lightning.pytorch.callbacks.Timer` and broadcast from
    rank 0, so that every rank steps with the same rate (called once per optimizer step on every rank).

    Raises:
        ValueError: the trainer has no wall-clock budget (``trainer.max_time`` unset).
    """
    from vidgen.lit.budget import budget_fraction_spent, budget_timer

    timer = budget_timer(trainer)
    if timer is None:
        raise ValueError("optim.schedule_over=time needs a wall-clock budget: set trainer.max_time")
    return lambda: budget_fraction_spent(trainer, timer)


def fit_length(module: Any) -> int | None:
    """Optimizer steps of the fit ``module`` is attached to (``trainer.estimated_stepping_batches``); None
    outside a fit (a benchmark calling ``configure_optimizers`` by hand)."""
    trainer = getattr(module, "_trainer", None)
    return None if trainer is None else int(trainer.estimated_stepping_batches)


def schedule_clock(module: Any, optim: dict[str, Any]) -> Callable[[], float] | None:
    """The ``progress`` to hand :func:`with_lr_schedule`: :func:`budget_progress` of the fit ``module`` is
    attached to when ``optim.schedule_over`` is ``time`` (or ``auto`` with a ``trainer.max_time``), else None
    (the steps' clock; also outside a fit)."""
    from vidgen.lit.budget import budget_timer

    trainer = getattr(module, "_trainer", None)
    clock = str(optim.get("schedule_over", "steps"))
    if trainer is None or clock == "steps" or (clock == "auto" and budget_timer(trainer) is None):
        return None
    return budget_progress(trainer)


def with_lr_schedule(
    optimizer: torch.optim.Optimizer,
    optim: dict[str, Any],
    total_steps: int | None,
    progress: Callable[[], float] | None = None,
) -> torch.optim.Optimizer | dict[str, Any]:
    """``configure_optimizers``'s return value: the optimizer alone for a constant rate without warm-up or
    outside a fit (``total_steps`` None: there is no schedule to follow), else the optimizer and a per-step
    :class:`~torch.optim.lr_scheduler.LambdaLR` (saved in checkpoints, so a resumed run continues it).
    ``progress`` (:func:`budget_progress`) makes the cosine follow the wall-clock budget instead of the
    steps (``optim.schedule_over=time``)."""
    schedule = str(optim.get("schedule", "constant"))
    warmup = int(optim.get("warmup_steps", 0))
    min_ratio = float(optim.get("min_lr_ratio", 0.0))
    if (schedule == "constant" and warmup == 0) or total_steps is None:
        return optimizer

    def multiplier(step: int) -> float:
        now = progress() if progress is not None and schedule == "cosine" and step >= warmup else None
        return lr_multiplier(step, total_steps, schedule, warmup, min_ratio, now)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
