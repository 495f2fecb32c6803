"""Hydra sweeps beyond the basic launcher: the Optuna search (``hparams_search=latte_optuna``) and the
submitit launchers (``hydra/launcher=slurm``, ``hydra/launcher=submitit_local``).

What is checked: the objective ``python -m vidgen.train`` returns (``optimized_metric``) and its error when a
run does not produce it; the search config composes into an Optuna TPE sweep over an evaluation metric; a
two-trial search on the tiny config evaluates each trial at the end and reports the best trial's value; the
SLURM launcher asks for one job per sweep job with one task per GPU (tasks_per_node = gpus_per_node =
trainer.devices, nodes = trainer.num_nodes), down to the sbatch script, without a SLURM cluster; a
multirun through submitit's local executor (jobs run as subprocesses) trains.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from tests.conftest import CONFIG_DIR, QUICK_CLASSIFIER, REPO_ROOT, TINY, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.build import read_checkpoint
from vidgen.train import objective_value

# 2 training steps, no sample videos: a trial is mostly process start-up and the evaluation
QUICK = [*TINY, "samples.num_videos=0", "samples.final_num_videos=0", "trainer.max_steps=2"]
# end-of-training evaluation on the synthetic metrics, on few clips (the classifier trains in seconds)
QUICK_EVALUATION = [
    "evaluation.num_real=16",
    "evaluation.num_fake=8",
    "evaluation.batch_size=8",
    QUICK_CLASSIFIER,
]


def _compose_with_hydra(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def _multirun(tmp_path: Path, *args: str, timeout: float = 600) -> tuple[Path, str]:
    """``python -m vidgen.train -m <QUICK> <args>`` with every output under ``tmp_path``."""
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "vidgen.train",
        "-m",
        *QUICK,
        *args,
        f"paths.output_root={tmp_path / 'outputs'}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return sweep_dir, output


# ---------------------------------------------------------------------------------------------------------
# The objective


def _summary(evaluation: dict[str, float] | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {"metrics": {"train/loss": 0.5, "val/loss": 0.25}}
    if evaluation is not None:
        summary["evaluation"] = evaluation
    return summary


def test_objective_value_reads_evaluation_then_logged_metrics() -> None:
    assert objective_value(_summary(), None) is None
    assert objective_value(_summary(), "") is None
    assert objective_value(_summary(), "val/loss") == 0.25
    assert objective_value(_summary({"synthetic_fvd": 12.5}), "synthetic_fvd") == 12.5
    # an evaluation metric wins over a logged one of the same name
    assert objective_value(_summary({"val/loss": 7.0}), "val/loss") == 7.0


@pytest.mark.parametrize("evaluation", [None, {"fvd": 3.0}], ids=["not-evaluated", "other-metric"])
def test_optimized_metric_missing_from_the_run_raises_a_config_error(evaluation: dict | None) -> None:
    with pytest.raises(ConfigError) as info:
        objective_value(_summary(evaluation), "synthetic_fvd")
    assert info.value.key == "optimized_metric"
    message = str(info.value)
    assert message.startswith("optimized_metric:") and "synthetic_fvd" in message
    assert "val/loss" in message  # names what the run did produce


# ---------------------------------------------------------------------------------------------------------
# Optuna


def test_optuna_search_config_composes_into_a_tpe_sweep_over_an_evaluation_metric(tmp_path: Path) -> None:
    plain = _compose_with_hydra([])
    assert plain.hydra.sweeper._target_ == "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
    assert plain.optimized_metric is None and plain.evaluation.at_end is False

    cfg = _compose_with_hydra(["hparams_search=latte_optuna"])
    assert cfg.optimized_metric == "synthetic_fvd" and cfg.evaluation.at_end is True
    assert "synthetic_fvd" in cfg.metrics  # the default data (synthetic) evaluates it
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed is not None
    assert str(sweeper.direction) == "minimize" and sweeper.storage is None and sweeper.n_trials > 1
    assert set(sweeper.params) == {"optim.lr", "model.depth", "ema.decay"}
    validate_config(compose_config(["hparams_search=latte_optuna"], run_dir=tmp_path / "run"))

    # the search space parses into the distributions Optuna samples from
    import optuna
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    distributions, fixed = create_params_from_overrides([f"{k}={v}" for k, v in sweeper.params.items()])
    assert not fixed
    assert isinstance(distributions["optim.lr"], optuna.distributions.LogUniformDistribution)
    assert isinstance(distributions["model.depth"], optuna.distributions.CategoricalDistribution)
    assert isinstance(distributions["ema.decay"], optuna.distributions.CategoricalDistribution)


@pytest.mark.multiprocess  # two trainings + end-of-training evaluations in a subprocess (20-30 s on 2 cores)
def test_optuna_search_runs_two_trials_and_reports_the_best_evaluation(tmp_path: Path) -> None:
    # model.depth is given one value by TINY, so Optuna holds it fixed and searches optim.lr and ema.decay
    sweep_dir, output = _multirun(
        tmp_path, "hparams_search=latte_optuna", "hydra.sweeper.n_trials=2", *QUICK_EVALUATION
    )
    assert "Sampler: TPESampler" in output and "Directions: ['minimize']" in output
    trials = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in trials] == ["0", "1"]

    values, lrs = [], []
    for trial in trials:
        metrics = json.loads((trial / "metrics.json").read_text())["metrics"]
        values.append(metrics["synthetic_fvd"])
        assert (trial / "checkpoints" / "last.ckpt").is_file()
        config = yaml.safe_load((trial / ".hydra" / "config.yaml").read_text())
        assert config["optimized_metric"] == "synthetic_fvd" and config["evaluation"]["at_end"] is True
        assert config["model"]["depth"] == 2
        assert 1e-4 <= config["optim"]["lr"] <= 3e-3 and config["ema"]["decay"] in (0.99, 0.995, 0.999)
        lrs.append(config["optim"]["lr"])
    assert lrs[0] != lrs[1]  # each trial got its own sample

    result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert result["name"] == "optuna"
    assert result["best_value"] == pytest.approx(min(values), rel=1e-12)
    assert set(result["best_params"]) == {"optim.lr", "ema.decay"}
    best = trials[values.index(min(values))]
    best_config = yaml.safe_load((best / ".hydra" / "config.yaml").read_text())
    assert result["best_params"]["optim.lr"] == pytest.approx(best_config["optim"]["lr"])
    assert result["best_params"]["ema.decay"] == best_config["ema"]["decay"]


# ---------------------------------------------------------------------------------------------------------
# submitit launchers


class _FakeJob:
    def __init__(self, value: str) -> None:
        self.value = value

    def results(self) -> list[str]:
        return [self.value]


def test_slurm_launcher_asks_for_one_task_per_gpu_on_every_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import submitit
    from submitit.slurm.slurm import SlurmExecutor

    cfg = _compose_with_hydra(
        [
            "hydra/launcher=slurm",
            "trainer=ddp",
            "trainer.devices=8",
            "trainer.num_nodes=2",
            "hydra.launcher.partition=gpu",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
    )
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == cfg.trainer.devices == 8
    assert cfg.hydra.launcher.nodes == cfg.trainer.num_nodes == 2

    # Hydra builds the launcher like this (Plugins.instantiate_launcher); it resolves the interpolations
    launcher = instantiate(cfg.hydra.launcher)
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["tasks_per_node"] == launcher.params["gpus_per_node"] == 8
    assert launcher.params["nodes"] == 2 and launcher.params["partition"] == "gpu"
    launcher.setup(hydra_context=None, task_function=None, config=cfg)  # type: ignore[arg-type]

    # Submit a 2-job sweep as far as the sbatch script, with neither srun nor sbatch on this machine.
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    submitted: list[dict[str, Any]] = []

    def map_array(executor: submitit.AutoExecutor, function: Any, *arguments: Any) -> list[_FakeJob]:
        script = executor._executor._make_submission_file_text("python -u -m submitit.core._submit", "0")
        submitted.append({"script": script, "overrides": list(arguments[0]), "function": function})
        return [_FakeJob(f"job {n}") for n in range(len(arguments[0]))]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    returns = launcher.launch([["model.depth=12"], ["model.depth=24"]], initial_job_idx=0)
    assert returns == ["job 0", "job 1"]
    (submission,) = submitted  # one array submission, one SLURM job per sweep job
    assert submission["overrides"] == [["model.depth=12"], ["model.depth=24"]]
    assert submission["function"] is launcher
    lines = set(submission["script"].splitlines())
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1440",
        "#SBATCH --job-name=vidgen_train",
        "export OMP_NUM_THREADS=1",
    ):
        assert line in lines, f"{line!r} not in the sbatch script:\n{submission['script']}"


# make test-slow (CI time): the sweep and its job are two fresh Python processes (~15 s on 2 cores); the SLURM
# launcher's config and sbatch script are checked in CI above without running a job
@pytest.mark.multiprocess
@pytest.mark.slow
def test_submitit_local_multirun_trains_one_job(tmp_path: Path) -> None:
    sweep_dir, output = _multirun(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "optimized_metric=train/loss",
    )
    assert "Submitit 'local' sweep output dir" in output
    checkpoints = sorted(tmp_path.rglob("last.ckpt"))
    assert checkpoints == [sweep_dir / "0" / "checkpoints" / "last.ckpt"]
    assert read_checkpoint(checkpoints[0])["global_step"] == 2
    # the job ran in its own process: its output went to submitit's log, and its return value came back
    (log,) = sweep_dir.glob(".submitit/*/*_0_log.out")
    assert "vidgen: Latte" in log.read_text() and "vidgen: Latte" not in output
    (result_file,) = sweep_dir.glob(".submitit/*/*_0_result.pkl")
    import pickle

    status, job_return = pickle.loads(result_file.read_bytes())
    assert status == "success" and job_return.return_value > 0
