"""Multi-process data-parallel training on the CPU (``trainer=ddp_spawn``: 2 processes, gloo backend).

What is checked: a tiny Latte trains on 2 processes and both ranks end with identical weights; the launching
process gets the outputs once (checkpoints, logs, final samples) and rank 0's summary; the ranks read
disjoint data shards that together are the clips a single process with the same global batch reads; the
gradient averaging is exact (with the random streams aligned, 2 x batch 2 follows 1 x batch 4 to float
precision); resuming under ddp_spawn continues the step count; Hydra multiruns make one run directory per
job, also with ddp_spawn (whose workers do not re-run the sweep).

Why the real loss curves of 2 x batch 2 and 1 x batch 4 are not equal: the noise and timesteps of a training
step come from a stream keyed by ``(seed, step, rank)`` (vidgen.lit.seeding), drawn per rank for that
rank's own rows. The clips of every step are the same, but each clip gets other noise / timesteps, so the
losses differ by the sampling noise of the diffusion loss; that test uses a loose tolerance and the exact
check runs with a module whose streams are aligned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.aligned_training import (
    AlignedStreamsModule,
    StepRecorder,
    fit_tiny,
    max_weight_difference,
    read_records,
    recorder_overrides,
)
from tests.conftest import REPO_ROOT, TINY, compose_config
from vidgen.lit.build import read_checkpoint
from vidgen.lit.parallel import SpawnDDPStrategy
from vidgen.lit.training import train

pytestmark = pytest.mark.multiprocess  # each spawned run starts two fresh Python processes (~10 s on 2 cores)

SPAWN = ["trainer=ddp_spawn", "data.batch_size=2"]  # global batch 4, like TINY's single process


RECORDER = "tests.test_ddp.RankRecorder"


class RankRecorder(StepRecorder):
    """Per-rank record (tests.aligned_training.StepRecorder) plus the final denoiser + EMA weights."""

    def extra(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        weights = {
            k: v.detach().cpu().clone()
            for k, v in pl_module.state_dict().items()
            if k.startswith(("denoiser.", "ema_denoiser."))
        }
        return {"weights": weights}


def _records(out_dir: Path, world: int) -> list[dict[str, Any]]:
    return read_records(out_dir, world)


def _recorder(out_dir: Path) -> list[str]:
    return recorder_overrides(RECORDER, out_dir)


@pytest.fixture(scope="module")
def spawn_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny ddp_spawn run (2 x batch 2, 6 steps) through ``train(cfg)``, with per-rank records."""
    root = tmp_path_factory.mktemp("ddp")
    run_dir = root / "spawn"
    cfg = compose_config([*TINY, *SPAWN, *_recorder(root / "ranks")], run_dir=run_dir)
    summary = train(cfg)
    return {"root": root, "run_dir": run_dir, "summary": summary, "records": _records(root / "ranks", 2)}


def test_spawn_trains_on_two_processes_with_identical_ranks_and_outputs_once(spawn_run: dict) -> None:
    run_dir, summary, records = spawn_run["run_dir"], spawn_run["summary"], spawn_run["records"]
    # the summary of the launching process is rank 0's: step count and metrics came back from the workers
    assert summary["global_step"] == 6 and not summary["interrupted"]
    assert "train/loss" in summary["metrics"] and "val/loss" in summary["metrics"]
    assert not any(k.startswith("vidgen/") for k in summary["metrics"])
    assert all(r["global_step"] == 6 and len(r["steps"]) == 6 for r in records)
    # DDP keeps the replicas in lockstep: both ranks hold exactly the same weights (and EMA weights)
    assert max_weight_difference(records[0]["weights"], records[1]["weights"]) == 0.0
    # the checkpoint and the launching process's module hold those weights too
    state = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 6
    saved = {k: v for k, v in state.items() if k in records[0]["weights"]}
    assert max_weight_difference(saved, records[0]["weights"]) == 0.0
    # written once, by rank 0: checkpoints, one TensorBoard event file, validation and final samples
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {
        "last.ckpt",
        "step0000003.ckpt",
        "step0000006.ckpt",
    }
    event_files = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(event_files) == 1
    events = EventAccumulator(str(event_files[0]), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(6))
    assert len(list((run_dir / "samples" / "final").glob("sample_*.mp4"))) == 2
    assert sorted(p.name for p in (run_dir / "samples").glob("step_*")) == ["step_0000003", "step_0000006"]


def test_a_wall_clock_budget_under_ddp_spawn_ends_both_ranks_on_one_saved_step(tmp_path: Path) -> None:
    """The demo recipe's ``trainer.max_time`` with two processes: both ranks stop after the same step, and
    ``last.ckpt`` (written by the collective ``save_checkpoint`` on that step, rank 0's clock deciding for
    both) holds it."""
    run_dir = tmp_path / "run"
    budget = ["trainer.max_time=00:00:00:04", "trainer.max_steps=100000", "~callbacks.model_checkpoint"]
    cfg = compose_config([*TINY, *SPAWN, *budget, *_recorder(tmp_path / "ranks")], run_dir=run_dir)
    summary = train(cfg)
    steps = summary["global_step"]
    assert 6 < steps < 100000 and not summary["interrupted"]
    assert [r["global_step"] for r in _records(tmp_path / "ranks", 2)] == [steps, steps]
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == steps


def test_spawn_ranks_read_disjoint_shards_of_the_single_process_batches(
    spawn_run: dict, tmp_path: Path
) -> None:
    single = tmp_path / "ranks"
    train(compose_config([*TINY, "samples.final_num_videos=0", *_recorder(single)], run_dir=tmp_path / "run"))
    (reference,) = _records(single, 1)
    rank0, rank1 = spawn_run["records"]
    for step in range(6):
        a, b = rank0["steps"][step]["index"], rank1["steps"][step]["index"]
        assert len(a) == len(b) == 2 and not set(a) & set(b), f"step {step}: shards overlap {a} {b}"
        # together the two shards are the clips of the single process's batch of 4 (interleaved)
        assert sorted(a + b) == sorted(reference["steps"][step]["index"])
    # Loss curves: same clips, but each rank draws its own noise / timesteps (streams keyed by rank), so the
    # global-batch loss agrees only up to the sampling noise of the diffusion loss (see the module doc).
    ddp = [(rank0["steps"][s]["loss"] + rank1["steps"][s]["loss"]) / 2 for s in range(6)]
    ref = [reference["steps"][s]["loss"] for s in range(6)]
    print("ddp_spawn 2x2 global loss:", ddp, "\n1 process x4 loss:      ", ref)
    for step in range(6):
        assert abs(ddp[step] - ref[step]) <= 0.25 * ref[step], f"step {step}: {ddp[step]} vs {ref[step]}"
    assert abs(sum(ddp) - sum(ref)) <= 0.1 * sum(ref)


def _fit_aligned(overrides: list[str], devices: int, out_dir: Path) -> list[dict[str, Any]]:
    fit_tiny(
        [*overrides, "optim.lr=1e-3"],
        AlignedStreamsModule,
        [RankRecorder(str(out_dir / "ranks"))],
        run_dir=out_dir / "run",
        devices=devices,
        strategy=SpawnDDPStrategy() if devices > 1 else "auto",
    )
    return _records(out_dir / "ranks", devices)


def test_gradient_averaging_matches_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    (reference,) = _fit_aligned(["data.batch_size=4"], 1, tmp_path / "single")
    rank0, rank1 = _fit_aligned(["data.batch_size=2"], 2, tmp_path / "ddp")
    for step in range(4):
        ddp_loss = (rank0["steps"][step]["loss"] + rank1["steps"][step]["loss"]) / 2
        assert ddp_loss == pytest.approx(reference["steps"][step]["loss"], rel=1e-5, abs=1e-6)
    assert max_weight_difference(rank0["weights"], rank1["weights"]) == 0.0
    difference = max_weight_difference(rank0["weights"], reference["weights"])
    print(f"max |w_ddp - w_single| after 4 AdamW steps: {difference:.3g}")
    assert difference < 1e-5


# make test-slow (CI time): CI keeps resume under ddp_spawn after a SIGTERM (tests/test_interrupt_spawn.py)
# and from a sharded checkpoint (tests/test_fsdp.py)
@pytest.mark.slow
def test_resume_under_ddp_spawn_continues_training(spawn_run: dict, tmp_path: Path) -> None:
    last = spawn_run["run_dir"] / "checkpoints" / "last.ckpt"
    run_dir = tmp_path / "resumed"
    overrides = [*TINY, *SPAWN, "trainer.max_steps=8", "samples.final_num_videos=0", f"ckpt_path={last}"]
    summary = train(compose_config([*overrides, *_recorder(tmp_path / "ranks")], run_dir=run_dir))
    assert summary["global_step"] == 8
    rank0, rank1 = _records(tmp_path / "ranks", 2)
    assert [s["step"] for s in rank0["steps"]] == [6, 7] == [s["step"] for s in rank1["steps"]]
    assert max_weight_difference(rank0["weights"], rank1["weights"]) == 0.0
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 8
    # the data continues where the first run stopped: no clip of the first 6 steps is read again
    seen = {i for record in spawn_run["records"] for s in record["steps"] for i in s["index"]}
    assert not seen & {i for s in rank0["steps"] + rank1["steps"] for i in s["index"]}


def _sweep(tmp_path: Path, *args: str) -> tuple[list[Path], str]:
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "vidgen.train",
        "-m",
        *TINY,
        "samples.num_videos=0",
        "samples.final_num_videos=0",
        "trainer.max_steps=2",
        *args,  # after TINY, which sets model.depth and data.batch_size
        f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return sorted(tmp_path.rglob("last.ckpt")), output


# make test-slow (CI time): a plain grid multirun; CI keeps the DDP multirun below and the sweeps of
# tests/test_latte_experiments.py and tests/test_compare_methods.py
@pytest.mark.slow
def test_multirun_2x2_makes_exactly_four_runs(tmp_path: Path) -> None:
    checkpoints, output = _sweep(tmp_path, "optim.lr=1e-3,2e-3", "model.depth=1,2")
    sweep_dir = tmp_path / "sweep"
    assert checkpoints == [sweep_dir / str(n) / "checkpoints" / "last.ckpt" for n in range(4)]
    assert output.count("vidgen: Latte") == 4
    depths = {read_checkpoint(p)["vidgen_config"]["model"]["depth"] for p in checkpoints}
    assert depths == {1, 2}


# make test-slow (CI time): the ddp_spawn twin of the script-relaunching multirun test above, which CI keeps
@pytest.mark.slow
def test_multirun_with_ddp_spawn_is_not_rerun_by_the_workers(tmp_path: Path) -> None:
    checkpoints, output = _sweep(tmp_path, "trainer=ddp_spawn", "data.batch_size=2", "optim.lr=1e-3,2e-3")
    sweep_dir = tmp_path / "sweep"
    assert checkpoints == [sweep_dir / str(n) / "checkpoints" / "last.ckpt" for n in range(2)]
    assert output.count("vidgen: Latte") == 2  # the workers do not run the program (nor the sweep) again
    assert output.count("Launching 2 jobs locally") == 1
    for path in checkpoints:
        checkpoint = read_checkpoint(path)
        assert checkpoint["global_step"] == 2
        assert checkpoint["vidgen_config"]["trainer"]["strategy"]["_target_"].endswith("SpawnDDPStrategy")


def test_multirun_with_script_relaunching_ddp_runs_each_job_once(tmp_path: Path) -> None:
    """``trainer=ddp`` starts rank 1 by re-running the command: inside a multirun it must run only the
    current job (Lightning alone would re-run ``-m`` and the whole sweep in every child)."""
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    checkpoints, output = _sweep(tmp_path, *ddp, "data.batch_size=2", "optim.lr=1e-3,2e-3")
    sweep_dir = tmp_path / "sweep"
    assert checkpoints == [sweep_dir / str(n) / "checkpoints" / "last.ckpt" for n in range(2)]
    assert output.count("Launching 2 jobs locally") == 1  # the children did not start a sweep of their own
    assert output.count("vidgen: Latte") == 4  # each job: rank 0 and its one relaunched rank
    # rank 1's log lands in the job's own folder, not in a fresh run folder
    assert sorted(p.parent.name for p in sweep_dir.glob("*/train_ddp_process_1.log")) == ["0", "1"]
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("*.log"))
    for path, lr in zip(checkpoints, (1e-3, 2e-3)):
        checkpoint = read_checkpoint(path)
        assert checkpoint["global_step"] == 2
        assert checkpoint["vidgen_config"]["optim"]["lr"] == lr
