"""Callbacks: a checkpoint on interruption (Ctrl-C / SIGTERM) that the run can resume from.

Stopping is a collective decision under data parallelism: every rank must stop after the same optimizer step
(the checkpoint save is a collective, and a rank that trains on would wait forever for the others'
gradients). :class:`InterruptCheckpoint` therefore handles the signals itself in every process and agrees on
the stop with one tiny all-reduce per step; :func:`forward_stop_signals` makes the launching process of the
spawn strategies (``ddp_spawn``, ``fsdp_spawn``) pass a SIGTERM / Ctrl-C on to its worker processes.

Why not Lightning's own SIGTERM handling (Lightning 2.6):

- it registers its handler inside ``Trainer._run``, i.e. only in the spawned workers: the launching process
  of a spawn strategy keeps the default action and dies at once on SIGTERM (its workers then get SIGINT
  from PyTorch's parent-death signal and go on as orphans);
- in a worker, its handler calls ``dist.broadcast`` from inside the signal handler, at whatever point of the
  collective sequence each rank happens to be, which breaks the process group (gloo aborts);
- the flag is broadcast from rank 0 at the start of each batch, but also checked rank-locally at the end of
  the batch, so the signalled rank raises one step before the others;
- the ``SIGTERMException`` it raises is a ``SystemExit``: a spawned worker ends with status 0 without handing
  its results back, and the launching process waits for them forever.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import SIGTERMException

from vidgen.lit.budget import budget_is_spent

_HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interrupted_exit_code(signum: int) -> int:
    """The exit status of a run stopped by signal ``signum`` after writing its checkpoint: ``128 + signum``,
    the shell's convention (130 after Ctrl-C, 143 after SIGTERM), distinct from a crash (1) and a config
    error (2), so that a scheduler's script can requeue a pre-empted job and not a failed one."""
    return 128 + int(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C or SIGTERM, finish the current optimizer step, write ``<dirpath>/last.ckpt`` and stop.

    A second Ctrl-C aborts at once, without a checkpoint (the step may be half done); further SIGTERMs change
    nothing (a cluster that pre-empts a job sends SIGTERM, possibly to every process, then SIGKILL after a
    grace period). With gradient accumulation the stop waits for the optimizer step that ends the
    accumulation. Under data parallelism every rank stops after the same step (one all-reduce of the stop
    flag per step) and every rank takes part in the save (a collective under FSDP). The validation that
    Lightning would run after a stop is skipped: the checkpoint is written, the process should exit quickly.

    Exceptions (a NaN loss, a bug) write nothing, so a broken state never becomes the checkpoint that
    ``ckpt_path=last`` resumes from. The handlers are in place from the start of the training loop to its end;
    the launching process of a spawn strategy needs :func:`forward_stop_signals` around ``trainer.fit``.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.dirpath = Path(dirpath)
        self.filename = filename
        self.interrupted = False
        # the first stop signal received (signal.SIGINT / SIGTERM), None while none came
        self.stop_signal: int | None = None
        self._stop_requested = False
        self._sigint_received = False
        self._previous_handlers: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None
        self._step_at_batch_start: int | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.dirpath / f"{self.filename}.ckpt"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # handlers are per process: a spawned worker installs its own
        state["_previous_handlers"], state["_trainer"] = {}, None
        return state

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            if self._sigint_received:  # second Ctrl-C: give up at once
                self._restore_handlers()
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self._sigint_received = True
            message = (
                "\nCtrl-C: finishing this step, saving a checkpoint, then stopping (Ctrl-C again aborts)."
            )
        else:
            message = "\nSIGTERM: finishing this step, saving a checkpoint, then stopping."
        if self._stop_requested:
            return
        self._stop_requested = True
        self.stop_signal = int(signum)
        rank_zero_info(message)
        # trainer=ddp / fsdp started by re-running the command: this is rank 0, it passes SIGTERM on to the
        # other ranks (their own InterruptCheckpoint handles it). Under ddp_spawn the workers' launcher holds
        # no processes: the launching process forwards (forward_stop_signals).
        launcher = getattr(self._trainer.strategy, "launcher", None) if self._trainer is not None else None
        if signum == signal.SIGTERM and launcher is not None:
            launcher.kill(signal.SIGTERM)

    def _install_handlers(self) -> None:
        if not _in_main_thread():  # e.g. some launchers: keep the default handling
            return
        for signum in _HANDLED_SIGNALS:
            previous = signal.signal(signum, self._on_signal)
            self._previous_handlers.setdefault(signum, previous)

    def _restore_handlers(self) -> None:
        if not _in_main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after Lightning's own SIGTERM handler went in (Trainer._run): ours replaces it for the training
        # loop; Lightning puts back the handlers of before fit when it tears down (also after an exception)
        self._trainer = trainer
        self._stop_requested = self._sigint_received = self.interrupted = False
        self.stop_signal = None
        self._install_handlers()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()
        self._trainer = None

    # ------------------------------------------------------------------ stopping
    def on_train_batch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.interrupted or trainer.global_step == self._step_at_batch_start:
            return  # gradients are being accumulated: stop after the optimizer step only
        stop = self._stop_requested
        if trainer.world_size > 1:  # the same decision on every rank, after the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._save(trainer)
            trainer.should_stop = True
            trainer.limit_val_batches = 0  # Lightning would validate (and sample) once more before stopping

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # SIGTERM before training started, while Lightning's handler was in place (single process)
        if isinstance(exception, SIGTERMException) and not self.interrupted:
            self.stop_signal = int(signal.SIGTERM)
            self._save(trainer)
        self._restore_handlers()
        self._trainer = None

    def _save(self, trainer: L.Trainer) -> None:
        self.interrupted = True
        trainer.save_checkpoint(str(self.ckpt_path))
        rank_zero_info(f"Interrupted at step {trainer.global_step}: checkpoint written to {self.ckpt_path}")


class ReceivedSignal:
    """What :func:`forward_stop_signals` yields: the first stop signal the launching process received."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextlib.contextmanager
def forward_stop_signals(trainer: L.Trainer) -> Iterator[ReceivedSignal]:
    """Around ``trainer.fit`` in the launching process: pass SIGTERM and Ctrl-C on to spawned workers.

    With the spawn strategies (``ddp_spawn``, ``fsdp_spawn``) the fit runs in worker processes while the
    launching process waits for them, without a signal handler of its own (Lightning installs its handlers
    in the workers only). A cluster pre-empts a job by sending SIGTERM to that process, which then died at
    once. Inside this context it sends SIGTERM to the workers instead, whose :class:`InterruptCheckpoint`
    finishes the step, writes ``last.ckpt`` on all ranks and stops; ``fit`` then returns normally (rank 0's
    results come back, ``train`` reports the interruption). A second Ctrl-C aborts. A no-op for other
    strategies (there the training process handles the signals itself), without an
    :class:`InterruptCheckpoint`, or outside the main thread.

    Yields a :class:`ReceivedSignal`: the workers always get SIGTERM, this says whether it was a Ctrl-C.
    """
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    has_callback = any(isinstance(c, InterruptCheckpoint) for c in trainer.callbacks)
    received = ReceivedSignal()
    if not (isinstance(launcher, _MultiProcessingLauncher) and has_callback and _in_main_thread()):
        yield received
        return

    state = {"sigint": False, "forwarded": False, "active": True}

    def forward_when_started() -> None:  # a signal that came while the workers were being started
        while state["active"] and not launcher.procs:
            time.sleep(0.05)
        if state["active"]:
            launcher.kill(signal.SIGTERM)

    def on_signal(signum: int, frame: Any) -> None:
        if launcher.procs and not any(p.is_alive() for p in launcher.procs):
            restore()  # the workers are done: the usual handling (SIGTERM ends this process)
            signal.raise_signal(signum)
            return
        if signum == signal.SIGINT:
            if state["sigint"]:  # second Ctrl-C: abort (the workers get SIGINT from PyTorch as we exit)
                restore()
                raise KeyboardInterrupt
            state["sigint"] = True
        if state["forwarded"]:
            return
        state["forwarded"] = True
        received.signum = int(signum)
        if launcher.procs:
            launcher.kill(signal.SIGTERM)
        else:
            threading.Thread(target=forward_when_started, daemon=True).start()

    previous = {signum: signal.signal(signum, on_signal) for signum in _HANDLED_SIGNALS}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    try:
        yield received
    finally:
        state["active"] = False
        restore()


class FinalStepCheckpoint(L.Callback):
    """Write ``<dirpath>/last.ckpt`` after the last training step: the step of ``trainer.max_steps``, or the
    step that ran out of a wall-clock budget (``trainer.max_time``, e.g. the demo recipe's).

    ModelCheckpoint saves only every N steps; this makes ``last.ckpt`` the final state whatever the cadence.
    It saves from inside the training loop, where Lightning still records the data loader's position, so a
    run resumed from it continues with exactly the batches an uninterrupted run would see. Lightning's
    :class:`~lightning.pytorch.callbacks.Timer` may stop the fit after this callback's check of the same step
    (the two read the clock one after the other): then the step is saved when training ends.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last") -> None:
        self.dirpath = Path(dirpath)
        self.filename = filename
        self._saved_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.fast_dev_run:
            return
        if 0 < trainer.max_steps <= trainer.global_step or budget_is_spent(trainer):
            self._save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run and budget_is_spent(trainer) and trainer.global_step != self._saved_step:
            self._save(trainer)

    def _save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(str(self.dirpath / f"{self.filename}.ckpt"))
        self._saved_step = trainer.global_step
