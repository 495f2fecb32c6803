"""What a finished ``trainer.fit`` reports back to the launching process: the final step, whether it was
interrupted, and the logged metrics, also when the fit ran in spawned worker processes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import lightning as L
import torch

from vidgen.lit.callbacks import InterruptCheckpoint

__all__ = ["FitResults", "ReportFitResults", "read_fit_results"]

_STEP_KEY, _INTERRUPTED_KEY = "vidgen/global_step", "vidgen/interrupted"


@dataclass(frozen=True)
class FitResults:
    """The final optimizer step, whether a stop signal ended the fit early, and the logged metrics."""

    global_step: int
    interrupted: bool
    metrics: dict[str, float] = field(default_factory=dict)


def _interrupted(callbacks: Sequence[L.Callback]) -> bool:
    return any(isinstance(c, InterruptCheckpoint) and c.interrupted for c in callbacks)


class ReportFitResults(L.Callback):
    """Put the final step and the interrupt flag into ``trainer.callback_metrics`` at the end of fit.

    With ``strategy=ddp_spawn`` the fit runs in worker processes and Lightning copies back to the launching
    process only rank 0's weights and ``callback_metrics``, not the loop state or the callbacks; this makes
    the two values survive the trip. :func:`read_fit_results` takes them out of the metrics again.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics[_STEP_KEY] = torch.tensor(float(trainer.global_step))
        trainer.callback_metrics[_INTERRUPTED_KEY] = torch.tensor(float(_interrupted(trainer.callbacks)))


def read_fit_results(trainer: L.Trainer, callbacks: Sequence[L.Callback]) -> FitResults:
    """The results of the fit that just ended: :class:`ReportFitResults`'s values when it ran (the spawn
    strategies' rank 0), else this process's trainer and ``callbacks``."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    global_step = int(metrics.pop(_STEP_KEY, trainer.global_step))
    interrupted = bool(metrics.pop(_INTERRUPTED_KEY, 0.0)) or _interrupted(callbacks)
    return FitResults(global_step=global_step, interrupted=interrupted, metrics=metrics)
