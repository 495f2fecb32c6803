"""The "Resume with:" command of an interrupted run, and the exit status of an interruption (the processes
themselves run in tests/test_cli.py and tests/test_interrupt_spawn.py)."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

from vidgen.lit.callbacks import InterruptCheckpoint, interrupted_exit_code
from vidgen.lit.checkpoints import resolve_ckpt_path
from vidgen.lit.fit_results import read_fit_results
from vidgen.lit.training import resume_command


def test_the_command_keeps_the_overrides_and_continues_in_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "2026-01-01_00-00-00"
    overrides = [
        "model=latte_v2",
        "ckpt_path=/old/place/step0001000.ckpt",  # the run was itself a resume: replaced
        "hydra.run.dir=/elsewhere",
        "+callbacks.extra.note=a b",
        "'captions=[\"a red square\"]'",
    ]
    command = resume_command(run_dir, run_dir / "checkpoints" / "last.ckpt", overrides)
    words = shlex.split(command)
    assert words == [
        "python",
        "-m",
        "vidgen.train",
        "model=latte_v2",
        "+callbacks.extra.note=a b",
        "'captions=[\"a red square\"]'",
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
    ]
    # ckpt_path=last in that run directory is the interruption's checkpoint
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    assert resolve_ckpt_path("last", run_dir, run_dir.parent) == last


def test_a_checkpoint_written_elsewhere_is_named(tmp_path: Path) -> None:
    command = resume_command(tmp_path / "run", tmp_path / "ckpts" / "last.ckpt", [])
    assert command.endswith(f"hydra.run.dir={tmp_path / 'run'} ckpt_path={tmp_path / 'ckpts' / 'last.ckpt'}")


def test_exit_status_is_128_plus_the_signal() -> None:
    assert interrupted_exit_code(signal.SIGINT) == 130
    assert interrupted_exit_code(signal.SIGTERM) == 143


class _Trainer:
    """What :func:`read_fit_results` reads of a trainer."""

    def __init__(self) -> None:
        self.callback_metrics: dict = {}
        self.global_step = 7


def test_the_fit_results_carry_the_stop_signal(tmp_path: Path) -> None:
    callback = InterruptCheckpoint(tmp_path)
    assert read_fit_results(_Trainer(), [callback]).stop_signal is None
    callback.interrupted, callback.stop_signal = True, int(signal.SIGINT)
    results = read_fit_results(_Trainer(), [callback])
    assert results.interrupted and results.stop_signal == signal.SIGINT and results.global_step == 7
