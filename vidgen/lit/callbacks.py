"""Callbacks: a checkpoint on interruption (Ctrl-C / SIGTERM) that the run can resume from."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException


class InterruptCheckpoint(L.Callback):
    """On the first Ctrl-C, finish the current training step, write ``<dirpath>/last.ckpt`` and stop.

    A second Ctrl-C aborts at once, without a checkpoint (the step may be half done). SIGTERM (cluster pre-emption) is turned by Lightning into an exception at
    the end of a step; this callback then writes the same checkpoint. Other exceptions (a NaN loss, a bug)
    write nothing, so a broken state never becomes the checkpoint that ``ckpt_path=last`` resumes from.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.interrupted = False
        self._stop_requested = False
        self._previous_handler: Any = None

    @property
    def ckpt_path(self) -> Path:
        return self.dirpath / f"{self.filename}.ckpt"

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # second Ctrl-C: give up at once
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._stop_requested = True
        rank_zero_info(
            "\nCtrl-C: finishing this step, saving a checkpoint, then stopping (Ctrl-C again aborts)."
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        try:
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (e.g. some launchers): keep the default handling
            self._previous_handler = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self._stop_requested and not self.interrupted:
            self._save(trainer)
            trainer.should_stop = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException) and not self.interrupted:
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        self.interrupted = True
        trainer.save_checkpoint(str(self.ckpt_path))
        rank_zero_info(f"Interrupted at step {trainer.global_step}: checkpoint written to {self.ckpt_path}")


class FinalStepCheckpoint(L.Callback):
    """Write ``<dirpath>/last.ckpt`` after the last training step (``trainer.max_steps``).

    ModelCheckpoint saves only every N steps; this makes ``last.ckpt`` the final state whatever the cadence.
    It saves from inside the training loop, where Lightning still records the data loader's position, so a
    run resumed from it continues with exactly the batches an uninterrupted run would see.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.dirpath = Path(dirpath)
        self.filename = filename

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step and not trainer.fast_dev_run:
            trainer.save_checkpoint(str(self.dirpath / f"{self.filename}.ckpt"))
