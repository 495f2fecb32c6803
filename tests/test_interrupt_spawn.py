"""Pre-emption under the spawn strategies: SIGTERM to ``python -m vidgen.train trainer=ddp_spawn|fsdp_spawn``.

A cluster pre-empts a job by sending SIGTERM to the process it launched (here the launching process, whose
workers run the fit), or to every process of the job. Expected: every rank finishes the same optimizer step,
every rank takes part in writing ``checkpoints/last.ckpt`` (under fsdp_spawn a folder with one shard per rank
and ``meta.pt``: a collective), the launching process exits with 143 (128 + SIGTERM: stopped, not crashed)
and the "Stopped early ... Resume with" message, and that command resumes from that step to ``max_steps``
in the same run directory.

Each test starts the 2-process run as a subprocess, waits for the checkpoint of step 2 (so training is under
way), sends SIGTERM, then resumes in the same run directory. Per-rank records (:class:`StopRecorder`, pickled
to the workers) show where each rank stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from tests.conftest import REPO_ROOT, TINY
from tests.test_cli import ENV, run_resume_command
from vidgen.lit.build import read_checkpoint

pytestmark = pytest.mark.multiprocess  # two spawned runs of two processes each: ~30-40 s per test on 2 cores

RECORDER = "tests.test_interrupt_spawn.StopRecorder"


class StopRecorder(L.Callback):
    """Writes ``<out_dir>/rank<r>.pt`` at the end of fit: this rank's trained steps, final step, and (when
    not sharded) its final denoiser weights."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = str(out_dir)
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.steps.append(trainer.global_step - 1)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        weights = None
        if not getattr(pl_module, "is_sharded", False):
            weights = {
                k: v.detach().clone() for k, v in pl_module.state_dict().items() if k.startswith("denoiser.")
            }
        record = {"rank": trainer.global_rank, "global_step": trainer.global_step, "steps": self.steps}
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        torch.save({**record, "weights": weights}, Path(self.out_dir) / f"rank{trainer.global_rank}.pt")


def _records(out_dir: Path) -> list[dict[str, Any]]:
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _args(trainer: str, run_dir: Path, ranks: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        f"trainer={trainer}",
        "data.batch_size=2",
        "callbacks.model_checkpoint.save_last=false",  # last.ckpt only from the interruption
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "trainer.val_check_interval=1000",
        "samples.final_num_videos=0",
        f"+callbacks.recorder._target_={RECORDER}",
        f"+callbacks.recorder.out_dir={ranks}",
        *extra,
        f"hydra.run.dir={run_dir}",
    ]


def _written(checkpoint: Path) -> bool:
    """A .ckpt file, or a sharded checkpoint folder once complete (rank 0 writes meta.pt last)."""
    return checkpoint.is_file() or (checkpoint / "meta.pt").is_file()


def _interrupt(trainer: str, run_dir: Path, ranks: Path, whole_group: bool = False) -> tuple[int, str, str]:
    """Start a long run, wait for the step-2 checkpoint, SIGTERM it; returns (return code, stdout, stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vidgen.train", *_args(trainer, run_dir, ranks, "trainer.max_steps=100000")],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the workers can be signalled (and cleaned up) too
    )
    try:
        deadline = time.monotonic() + 120
        while not _written(run_dir / "checkpoints" / "step0000002.ckpt"):
            assert process.poll() is None, f"training ended early: {process.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint of step 2 after 120 s"
            time.sleep(0.1)
        if whole_group:  # e.g. SLURM: every process of the job gets SIGTERM
            os.killpg(process.pid, signal.SIGTERM)
        else:  # the launching process only; it must pass the signal on to its workers
            process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, stdout, stderr


def _check_stopped_together(run_dir: Path, ranks: Path, rc: int, stdout: str, stderr: str) -> int:
    """The launching process exited with the status of a SIGTERM stop (143, not a crash's 1); both ranks
    stopped after the step the checkpoint holds."""
    assert rc == 143, stderr[-3000:]
    assert "Stopped early by SIGTERM after step" in stdout and "(exit status 143)" in stdout, stdout[-2000:]
    assert f"hydra.run.dir={run_dir} ckpt_path=last" in stdout, stdout[-2000:]
    assert "SIGTERM: finishing this step" in stderr + stdout
    last = run_dir / "checkpoints" / "last.ckpt"
    assert _written(last), stderr[-3000:]
    step = read_checkpoint(last)["global_step"]
    assert step >= 3  # the signal came after step 2's checkpoint
    records = _records(ranks)
    assert [r["rank"] for r in records] == [0, 1]
    assert [r["global_step"] for r in records] == [step, step], "the ranks stopped after different steps"
    assert all(r["steps"] == list(range(step)) for r in records)
    return step


# CI runs ddp_spawn; fsdp_spawn (the same stop agreement, sharded save) runs under `make test-slow`
@pytest.mark.parametrize("trainer", ["ddp_spawn", pytest.param("fsdp_spawn", marks=pytest.mark.slow)])
def test_sigterm_to_the_launching_process_checkpoints_all_ranks_and_resumes(
    trainer: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    rc, stdout, stderr = _interrupt(trainer, run_dir, tmp_path / "ranks")
    step = _check_stopped_together(run_dir, tmp_path / "ranks", rc, stdout, stderr)
    last = run_dir / "checkpoints" / "last.ckpt"
    if trainer == "fsdp_spawn":  # every rank wrote its shard of the collective save
        assert last.is_dir() and sorted(p.name for p in last.glob("*.distcp")) == [
            "__0_0.distcp",
            "__1_0.distcp",
        ]
    else:  # DDP replicas are identical, and so is the checkpoint
        rank0, rank1 = _records(tmp_path / "ranks")
        state = read_checkpoint(last)["state_dict"]
        for key, value in rank0["weights"].items():
            assert torch.equal(value, rank1["weights"][key]) and torch.equal(value, state[key]), key

    # the printed command resumes in the same run directory: from the interrupted step to max_steps
    resumed = tmp_path / "resumed_ranks"
    result = run_resume_command(
        stdout, f"trainer.max_steps={step + 2}", f"callbacks.recorder.out_dir={resumed}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from {last}" in result.stdout and "Stopped early" not in result.stdout
    assert read_checkpoint(last)["global_step"] == step + 2
    assert all(r["steps"] == [step, step + 1] for r in _records(resumed))


@pytest.mark.slow  # `make test-slow`: a third spawned job of 40-80 s
def test_sigterm_to_every_process_of_the_job_stops_once(tmp_path: Path) -> None:
    """SIGTERM reaches the workers directly AND forwarded by the launching process: still one clean stop."""
    run_dir = tmp_path / "run"
    rc, stdout, stderr = _interrupt("ddp_spawn", run_dir, tmp_path / "ranks", whole_group=True)
    _check_stopped_together(run_dir, tmp_path / "ranks", rc, stdout, stderr)
    assert stderr.count("checkpoint written to") == 1  # rank 0 reports the one save
