"""Shared by the tests of the experiments/ folders: loading a script of experiments/<family>/ as a module, and
running one of its tiny sweeps (``python -m vidgen.train -m ...``) in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from tests.conftest import QUICK_CLASSIFIER, REPO_ROOT

# overrides that shrink any tiny-scale sweep to a smoke run: 2 steps at batch 2, an evaluation after each step
# on 4 generated clips (2 sampler steps) against 16 real ones, with a classifier trained for 12 steps
QUICK_SWEEP = [
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "data.batch_size=2",
    "samples.num_videos=0",
    "samples.final_num_videos=0",
    "sampler.steps=2",
    "evaluation.every_n_steps=1",
    "evaluation.num_real=16",
    "evaluation.num_fake=4",
    "evaluation.batch_size=4",
    QUICK_CLASSIFIER,
]


def load_script(family: str, name: str) -> Any:
    """``experiments/<family>/<name>.py`` imported as a module (the scripts are not a package)."""
    path = REPO_ROOT / "experiments" / family / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{family}_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sweep_values(cfg: DictConfig) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of a config composed with its Hydra node, parsed as Hydra's basic sweeper
    parses them: key -> the values of its jobs (one value for a fixed param)."""
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
    parser = OverridesParser.create()
    out = {}
    for key, value in params.items():
        override = parser.parse_overrides([f"{key}={value}"])[0]
        out[key] = list(override.sweep_string_iterator()) if override.is_sweep_override() else [str(value)]
    return out


def run_sweep(overrides: list[str], sweep_dir: Path, expected_jobs: int) -> list[Path]:
    """Run ``python -m vidgen.train -m <overrides> hydra.sweep.dir=<sweep_dir>`` (one thread per process), assert
    it succeeded with ``expected_jobs`` jobs, each with its metric history and final metrics, and return the
    job folders in job order."""
    command = [sys.executable, "-m", "vidgen.train", "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert len(jobs) == expected_jobs
    for job in jobs:
        assert (job / "metrics_history.jsonl").is_file() and (job / "metrics.json").is_file()
    return jobs
