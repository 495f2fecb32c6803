"""The command-line entry points, run as subprocesses on tiny overrides."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, TINY
from vidgen.lit.build import read_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def run_module(module: str, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` from the repository root; capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_train_sample_bench_cli(tmp_path: Path) -> None:
    run_dir = tmp_path / "train"
    result = run_module("vidgen.train", [*TINY, "trainer.max_steps=3", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Samples:" in result.stdout and "Checkpoints:" in result.stdout
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (
        run_dir / "checkpoints" / "last.ckpt"
    ).is_file()

    out = tmp_path / "sample"
    result = run_module(
        "vidgen.sample",
        [
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            "num_videos=2",
            "sampler=ddim",
            "sampler.steps=3",
            f"hydra.run.dir={out}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["grid.mp4", "sample_000.mp4", "sample_001.mp4"]

    bench_dir = tmp_path / "bench"
    result = run_module(
        "vidgen.bench",
        [
            *TINY,
            "bench.train_steps=2",
            "bench.warmup_steps=1",
            "bench.sample_videos=1",
            f"hydra.run.dir={bench_dir}",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((bench_dir / "bench.json").read_text())
    assert (
        report["params_trainable"] > 0
        and report["train_clips_per_s"] > 0
        and report["sample_s_per_video"] > 0
    )
    assert "training throughput" in result.stdout and "clips/s" in result.stdout


def test_invalid_value_fails_before_training_with_the_key(tmp_path: Path) -> None:
    result = run_module("vidgen.train", [*TINY, "optim.lr=-3", f"hydra.run.dir={tmp_path}"])
    assert result.returncode == 2
    assert "optim.lr" in result.stderr
    assert not (tmp_path / "checkpoints").exists()


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"training ended early: {process.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.2)


# CI sends SIGTERM (a scheduler's preemption); Ctrl-C (SIGINT) takes the same handler and runs under make test-slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_interrupted_run_leaves_a_resumable_checkpoint(sig: signal.Signals, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        *TINY,
        "trainer.max_steps=100000",
        "callbacks.model_checkpoint.save_last=false",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "trainer.val_check_interval=1000",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "vidgen.train", *args],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(run_dir / "checkpoints" / "step0000002.ckpt", process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    last = run_dir / "checkpoints" / "last.ckpt"
    assert last.is_file(), stderr[-3000:]
    step = read_checkpoint(last)["global_step"]
    assert step >= 2
    # 130 after Ctrl-C, 143 after SIGTERM: an interruption, not a crash (1) or a config error (2)
    assert process.returncode == 128 + sig, stderr[-3000:]
    assert f"Stopped early by {sig.name} after step {step} (exit status {128 + sig})" in stdout, stdout[
        -2000:
    ]
    # the printed command resumes in the same run directory (ckpt_path=last); go a few steps further
    result = run_resume_command(stdout, f"trainer.max_steps={step + 2}", "samples.final_num_videos=0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming from {last}" in result.stdout, result.stdout[-2000:]
    assert read_checkpoint(last)["global_step"] == step + 2
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["run"]  # no new run directory


def run_resume_command(stdout: str, *extra: str) -> subprocess.CompletedProcess:
    """Run the "Resume with: python -m vidgen.train ..." command an interrupted run printed, with ``extra``
    overrides appended (later overrides of the same key win)."""
    line = next(line for line in stdout.splitlines() if "Resume with: " in line)
    words = shlex.split(line.split("Resume with: ", 1)[1])
    assert words[:3] == ["python", "-m", "vidgen.train"], words
    return run_module("vidgen.train", [*words[3:], *extra])
