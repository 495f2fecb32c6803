"""Periodic evaluation during training (``evaluation.every_n_steps``, vidgen/lit/periodic_evaluation.py).

Checked on tiny runs with tiny metric counts: the rows of ``metrics_history.jsonl`` (one per cadence step, the
final one from ``evaluation.at_end``), ``eval/*`` in the logger, that a row is the evaluation of the EMA model
of that step (equal to evaluating that step's checkpoint afterwards), that the callback is inert when off and
fails before training on missing metric weights, the history helpers (resume truncation, last row wins), the
config check, how generated clips are split over ranks (labels, captions), and 2-process DDP / FSDP
runs in which every rank takes part but rank 0 alone writes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import QUICK_CLASSIFIER, REPO_ROOT, TINY, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.lit.build import load_module_from_checkpoint
from vidgen.lit.periodic_evaluation import (
    HISTORY_FILE,
    PeriodicEvaluation,
    _truncate_history,
    append_history,
    read_history,
)
from vidgen.lit.training import train
from vidgen.metrics.evaluation import build_metrics, evaluate_model
from vidgen.metrics.weights import MissingWeightsError

QUICK_EVALUATION = [
    "evaluation.num_real=16",
    "evaluation.num_fake=8",
    "evaluation.batch_size=4",
    QUICK_CLASSIFIER,  # its quality does not matter here
]
BASE = [*TINY, "logger=csv", "samples.num_videos=0", "samples.final_num_videos=0", *QUICK_EVALUATION]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache (synthetic classifier, real statistics) for the runs of this module."""
    return tmp_path_factory.mktemp("periodic_cache")


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / HISTORY_FILE).read_text().splitlines()]


def test_rows_at_the_cadence_and_the_final_evaluation(tmp_path: Path, cache_dir: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [*BASE, "evaluation.every_n_steps=3", "evaluation.at_end=true", f"paths.cache_dir={cache_dir}"],
        run_dir=run_dir,
    )
    summary = train(cfg)
    rows = _rows(run_dir)
    # step 3 from the callback; step 6 = the last step, written once, by the end-of-training evaluation
    assert [row["step"] for row in rows] == [3, 6]
    final = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert rows[-1]["metrics"] == pytest.approx(final, nan_ok=True)
    assert summary["evaluation"] == pytest.approx(final, nan_ok=True)
    for row in rows:
        assert {"synthetic_fvd", "synthetic_structure/object_presence"} <= set(row["metrics"])
        assert row["metrics"]["synthetic_fvd"] > 0
        assert row["train_seconds"] > 0
    assert rows[0]["eval_seconds"] > 0 and rows[1]["train_seconds"] > rows[0]["train_seconds"]

    # eval/* is logged at the evaluation step
    logged: dict[int, float] = {}
    with open(run_dir / "csv" / "metrics.csv") as handle:
        for record in csv.DictReader(handle):
            if record.get("eval/synthetic_fvd"):
                logged[int(record["step"])] = float(record["eval/synthetic_fvd"])
    assert logged[3] == pytest.approx(rows[0]["metrics"]["synthetic_fvd"])
    assert logged[6] == pytest.approx(rows[1]["metrics"]["synthetic_fvd"])  # logged after fit, still written

    # the step-3 row is the evaluation of the EMA model of step 3: evaluating the step-3 checkpoint afterwards
    # with the same settings (same clips, labels and noise) gives the same numbers
    module, _ = load_module_from_checkpoint(run_dir / "checkpoints" / "step0000003.ckpt")
    metrics = build_metrics(cfg.metrics, module.device, 16, 8)
    again = evaluate_model(
        module,
        instantiate_node(cfg.data),
        OmegaConf.to_container(cfg.data, resolve=True),
        metrics,
        cache_dir,
        batch_size=4,
        seed=int(cfg.seed),
    )
    assert again["metrics"] == pytest.approx(rows[0]["metrics"], rel=1e-5, nan_ok=True)
    assert again["cache"]["synthetic_fvd"].startswith("hit")  # the real statistics were cached by the run


def test_off_by_default_and_rows_without_final_evaluation(tmp_path: Path, cache_dir: Path) -> None:
    off = tmp_path / "off"
    train(compose_config([*BASE, "trainer.max_steps=2", f"paths.cache_dir={cache_dir}"], run_dir=off))
    assert not (off / HISTORY_FILE).exists()

    # at_end off: the callback also evaluates the final step when it is on the cadence
    on = tmp_path / "on"
    train(
        compose_config(
            [*BASE, "trainer.max_steps=4", "evaluation.every_n_steps=2", f"paths.cache_dir={cache_dir}"],
            run_dir=on,
        )
    )
    assert [row["step"] for row in _rows(on)] == [2, 4]
    assert not (on / "metrics.json").exists()


def test_missing_metric_weights_fail_before_training(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [
            *[item for item in BASE if "synthetic_fvd" not in item],  # fvd alone: no other metric's keys
            "evaluation.every_n_steps=2",
            "metrics=[fvd]",
            f"metrics.fvd.weights={tmp_path / 'i3d_torchscript.pt'}",
        ],
        run_dir=run_dir,
    )
    with pytest.raises(MissingWeightsError, match=r"i3d_torchscript\.pt"):
        train(cfg)
    assert not list(run_dir.rglob("*.ckpt"))  # not a single step was trained


def test_every_n_steps_is_validated(tmp_path: Path) -> None:
    validate_config(compose_config(["evaluation.every_n_steps=5"], run_dir=tmp_path / "run"))
    with pytest.raises(ConfigError) as info:
        validate_config(compose_config(["evaluation.every_n_steps=0"], run_dir=tmp_path / "run"))
    assert info.value.key == "evaluation.every_n_steps"


def test_history_helpers(tmp_path: Path) -> None:
    path = tmp_path / "sub" / HISTORY_FILE
    assert read_history(path) == []
    append_history(path, 10, {"fvd": 3.0}, train_seconds=1.5, eval_seconds=None)
    append_history(path, 20, {"fvd": 2.0})
    append_history(path, 30, {"fvd": 1.0})
    rows = read_history(path)
    assert [r["step"] for r in rows] == [10, 20, 30] and rows[0] == {
        "step": 10,
        "metrics": {"fvd": 3.0},
        "train_seconds": 1.5,
    }
    # a run resumed from step 20 drops the rows after it, and writes step 30 again
    _truncate_history(path, 20)
    assert [r["step"] for r in read_history(path)] == [10, 20]
    append_history(path, 20, {"fvd": 2.5})  # the same step twice: the last row wins
    assert read_history(path)[-1]["metrics"] == {"fvd": 2.5}

    # the training clock travels in the checkpoint
    callback = PeriodicEvaluation(every_n_steps=None, metrics={})
    assert not callback.enabled
    callback.load_state_dict({"train_seconds": 12.5})
    assert callback.state_dict()["train_seconds"] == pytest.approx(12.5)


@pytest.mark.multiprocess  # 2 CPU ranks in a subprocess, about 20-30 s each on 2 cores
# CI runs ddp_spawn; fsdp_spawn (the same sharing of the sampling) runs under `make test-slow`
@pytest.mark.parametrize("strategy", ["ddp_spawn", pytest.param("fsdp_spawn", marks=pytest.mark.slow)])
def test_ranks_share_the_sampling_and_rank_zero_writes_once(tmp_path: Path, strategy: str) -> None:
    # fsdp_spawn: the EMA model is sharded, so its forward pass is a collective: every rank must sample
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "vidgen.train",
        *BASE,
        f"trainer={strategy}",
        "data.batch_size=2",
        "trainer.max_steps=4",
        "evaluation.every_n_steps=2",
        "evaluation.num_fake=10",  # 2 ranks x batch 4: 2 rounds of 8, the last cut to 10 clips
        "~metrics.synthetic_fvd",  # the structure metric alone: no classifier to train in this test
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    rows = _rows(run_dir)
    assert [row["step"] for row in rows] == [2, 4]
    assert all(0 <= row["metrics"]["synthetic_structure/object_presence"] <= 1 for row in rows)
    assert (done.stdout + done.stderr).count("Evaluation at step 2") == 1


class _StubModule:
    """What _GeneratedClips uses of a module: generate() records its calls and returns grey clips."""

    def __init__(self, num_classes: int = 0) -> None:
        self.conditioner = type("C", (), {"num_classes": num_classes})()
        self.device = torch.device("cpu")
        self.calls: list[dict] = []

    def generate(self, n: int, generator=None, labels=None, captions=None) -> torch.Tensor:
        self.calls.append({"n": n, "labels": labels, "captions": captions})
        return torch.zeros(n, 3, 2, 4, 4)


class _StubStrategy:
    """all_gather of a 2-rank world seen from rank 0 (rank 1's tensor: rank 0's + 1)."""

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([tensor, tensor + 1])


def test_generated_clips_rounds_labels_and_captions() -> None:
    from vidgen.lit.periodic_evaluation import _clips_made, _GeneratedClips

    captions = [f"caption {i}" for i in range(10)]
    # one process: the batches of vidgen.evaluate (the last one cut), caption i for clip i
    module = _StubModule()
    clips = _GeneratedClips(module, None, 10, 4, 0, 1, 0, captions=captions)
    batches = list(clips)
    assert [len(b["video"]) for b in batches] == [4, 4, 2]
    assert [b["caption"] for b in batches] == [captions[0:4], captions[4:8], captions[8:10]]
    assert [c["captions"] for c in module.calls] == [captions[0:4], captions[4:8], captions[8:10]]

    # two ranks, seen from rank 0: whole rounds of 2 x 4 clips; the gathered batch is clips r*8 ... r*8+7
    assert _clips_made(10, 4, 2) == 16
    with pytest.raises(ValueError, match="16 captions"):
        _GeneratedClips(module, _StubStrategy(), 10, 4, 0, 2, 0, captions=captions)
    captions = [f"caption {i}" for i in range(16)]
    module = _StubModule(num_classes=3)
    clips = _GeneratedClips(module, _StubStrategy(), 10, 4, 0, 2, 0, captions=captions)
    batches = list(clips)
    assert clips.rounds == 2 and [len(b["video"]) for b in batches] == [8, 8]
    assert [b["caption"] for b in batches] == [captions[0:8], captions[8:16]]
    # rank 0 makes clips 0-3 then 8-11 (labels = clip number mod classes)
    assert [c["labels"].tolist() for c in module.calls] == [[0, 1, 2, 0], [2, 0, 1, 2]]
    assert [c["captions"] for c in module.calls] == [captions[0:4], captions[8:12]]
    assert batches[1]["label"].tolist() == [2, 0, 1, 2, 3, 1, 2, 3]  # the stub's rank 1 adds 1
    clips.finish()  # nothing left to run
    assert len(module.calls) == 2
