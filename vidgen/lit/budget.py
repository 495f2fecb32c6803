"""The fit's wall-clock budget (``trainer.max_time``): the :class:`~lightning.pytorch.callbacks.Timer` that
Lightning adds for it, how much of it is spent, and whether it is over, with rank 0's clock deciding for every
rank (as the Timer itself does), so that ranks agree on the step where a collective happens."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Timer

__all__ = ["budget_fraction_spent", "budget_is_spent", "budget_timer"]


def budget_timer(trainer: Any) -> Timer | None:
    """The trainer's Timer when it has a duration (``trainer.max_time`` set), else None."""
    for callback in trainer.callbacks:
        if isinstance(callback, Timer) and callback.time_remaining() is not None:
            return callback
    return None


def budget_fraction_spent(trainer: Any, timer: Timer) -> float:
    """The fraction of ``timer``'s duration spent so far, in [0, 1] (0 before the fit starts), rank 0's."""
    elapsed, remaining = timer.time_elapsed(), timer.time_remaining()
    fraction = min(1.0, max(0.0, elapsed / max(elapsed + remaining, 1e-9)))
    return float(trainer.strategy.broadcast(fraction))


def budget_is_spent(trainer: Any) -> bool:
    """Whether the wall-clock budget is over (False without one), rank 0's answer on every rank."""
    timer = budget_timer(trainer)
    return timer is not None and bool(trainer.strategy.broadcast(timer.time_remaining() <= 0))
