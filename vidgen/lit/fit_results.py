"""What a finished ``trainer.fit`` reports back to the launching process: the final step, whether it was
interrupted, and the logged metrics, also when the fit ran in spawned worker processes."""

from __future__ import annotations

import signal
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
    # the signal that stopped the fit (signal.SIGINT / SIGTERM as received by the training process), or None
    stop_signal: int | None = None


def _stop_signal(callbacks: Sequence[L.Callback]) -> int:
    """The signal number that made an :class:`InterruptCheckpoint` stop the fit (SIGTERM when it stopped
    without recording one); 0 when the fit was not interrupted."""
    for callback in callbacks:
        if isinstance(callback, InterruptCheckpoint) and callback.interrupted:
            return int(callback.stop_signal or signal.SIGTERM)
    return 0


class ReportFitResults(L.Callback):
    """Put the final step and the interrupt flag (the stop signal's number, 0: none) into ``trainer.callback_metrics`` at the end of fit.

    With ``strategy=ddp_spawn`` the fit runs in worker processes and Lightning copies back to the launching
    process only rank 0's weights and ``callback_metrics``, not the loop state or the callbacks; this makes
    the two values survive the trip. :func:`read_fit_results` takes them out of the metrics again.
    """

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.callback_metrics[_STEP_KEY] = torch.tensor(float(trainer.global_step))
        trainer.callback_metrics[_INTERRUPTED_KEY] = torch.tensor(float(_stop_signal(trainer.callbacks)))


def read_fit_results(trainer: L.Trainer, callbacks: Sequence[L.Callback]) -> FitResults:
    """The results of the fit that just ended: :class:`ReportFitResults`'s values when it ran (the spawn
    strategies' rank 0), else this process's trainer and ``callbacks``."""
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    global_step = int(metrics.pop(_STEP_KEY, trainer.global_step))
    signum = int(metrics.pop(_INTERRUPTED_KEY, 0.0)) or _stop_signal(callbacks)
    return FitResults(
        global_step=global_step, interrupted=bool(signum), metrics=metrics, stop_signal=signum or None
    )
