"""The method comparison (experiment=compare/methods, vidgen/lit/compare_arm.py): every arm composes at every
scale on the same data / sampler / conditioning, equal-compute budgets give equal FLOPs, the training FLOPs
counter agrees with Latte's forward formula, CMD's two stages run in order and share the budget, bad values
fail naming their key, and a 2-arm, 2-step sweep runs end to end into the report's table and plots."""

from __future__ import annotations

import json
import math
import mmap
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from tests.conftest import REPO_ROOT, compose_config
from tests.experiment_scripts import QUICK_SWEEP, load_script, sweep_values
from vidgen.benchmark.training_flops import training_flops
from vidgen.config.errors import ConfigError
from vidgen.lit.compare_arm import (
    ARMS,
    COSTS_FILE,
    STAGE_FILE,
    apply_budget,
    check_compare,
    run_arm,
    stage_config,
)

SCALES = ("compare/tiny", "compare/paper", "compare/paper_webvid")
MODELS = {
    "latte": "Latte",
    "latent_shift": "LatentUNet",
    "latent_vdm": "LatentUNet",
    "vdm": "VDMUNet3D",
    "cmd": "CMDDenoisers",
}


def _arm(tmp_path: Path, arm: str, scale: str = "compare/tiny", extra: list[str] | None = None) -> DictConfig:
    overrides = ["experiment=compare/methods", f"scale={scale}", f"arm={arm}", *(extra or [])]
    return compose_config(overrides, run_dir=tmp_path / "run")


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize("scale", SCALES)
def test_every_arm_composes_on_the_same_protocol(tmp_path: Path, scale: str) -> None:
    shared = {}
    for arm in ARMS:
        cfg = _arm(tmp_path, arm, scale)
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert str(cfg.model._target_).rsplit(".", 1)[-1] == MODELS[arm]
        assert cfg.compare.arm == arm and cfg.experiment_family == "compare"
        protocol = {
            key: json.dumps(resolved[key], sort_keys=True, default=str)
            for key in ("data", "sampler", "conditioner", "diffusion", "metrics", "evaluation", "seed")
        }
        protocol["budget"] = json.dumps(resolved["compare"]["train_flops"])
        for key, value in protocol.items():
            assert shared.setdefault(key, value) == value, f"{arm} differs from the other arms in {key}"
        if arm in ("latent_shift", "latent_vdm"):  # a trained T2I U-Net reused at paper scale (SD's)
            pretrained = resolved["model"]["pretrained_path"]
            assert (pretrained is None) == (scale == "compare/tiny")
    if scale == "compare/paper":  # UCF101's class reaches every arm as the text of its name
        assert json.loads(shared["conditioner"])["kind"] == "text"
        assert json.loads(shared["data"])["class_captions"] == "{name}"
    assert json.loads(shared["sampler"])["name"] == "ddim"


def test_the_sweep_covers_the_arms_each_scale_can_run(tmp_path: Path) -> None:
    def arms(scale: str) -> list[str]:
        overrides = ["experiment=compare/methods", f"scale={scale}", "arm=latte"]
        with_hydra = compose_config_with_hydra(overrides)
        return sweep_values(with_hydra)["arm"]

    assert arms("compare/tiny") == list(ARMS)
    assert arms("compare/paper_webvid") == list(ARMS)
    assert arms("compare/paper") == list(ARMS)


def compose_config_with_hydra(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    from vidgen.runtime import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def test_bad_compare_values_fail_naming_their_key(tmp_path: Path) -> None:
    cases = {
        "compare.budget=forever": "compare.budget",
        "compare.train_flops=-1": "compare.train_flops",
        "compare.evaluations=0": "compare.evaluations",
        "compare.autoencoder_share=1.5": "compare.stages.0.share",
    }
    for override, key in cases.items():
        cfg = _arm(tmp_path, "cmd", extra=[override])
        with pytest.raises(ConfigError) as error:
            check_compare(cfg)
        assert error.value.key == key, override
    cfg = compose_config(["experiment=compare/methods", "scale=compare/tiny"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError) as error:
        check_compare(cfg)
    assert error.value.key == "arm" and "-m" in str(error.value)


# ------------------------------------------------------------------------------------------------ FLOPs
def test_training_flops_of_latte_are_three_forwards_less_the_input_gradients_nobody_needs(
    tmp_path: Path,
) -> None:
    """Backward costs two forwards per matrix product (input and weight gradients), except the input
    gradients of the layers fed by data: the patch embedding (pixels) and the timestep MLP's first linear
    (sinusoidal features of width 256)."""
    from vidgen.models.latte import count_flops

    cfg = _arm(tmp_path, "latte")
    counted = training_flops(cfg)
    model = torch.nn.Module()
    with torch.device("meta"):
        from vidgen.config.instantiate import instantiate_node

        model = instantiate_node(cfg.model)
    forward = count_flops(model, (1, 3, int(cfg.data.num_frames), 16, 16))
    patch = int(cfg.model_patch_size_by_family.latte)
    tokens = int(cfg.data.num_frames) * (16 // patch) ** 2
    hidden = int(model.hidden_size)
    embed = 2 * tokens * (3 * patch * patch) * hidden  # the patch embedding's forward
    timestep = 2 * 256 * hidden
    assert counted.encode == 0  # pixel space: the identity autoencoder
    assert counted.trained["denoiser"] == 3 * forward - embed - timestep


def test_equal_compute_budgets_give_equal_flops(tmp_path: Path) -> None:
    spent = {}
    for arm in ARMS:
        cfg = _arm(tmp_path, arm, extra=["compare.budget=compute"])
        total, steps = 0.0, []
        for stage in cfg.compare.stages:
            stage_cfg = stage_config(cfg, stage)
            plan = apply_budget(stage_cfg, float(stage.share), last=False)
            total += plan["steps"] * plan["flops_per_step"]
            steps.append(plan["steps"])
            assert stage_cfg.evaluation.at_end is False and stage_cfg.evaluation.every_n_steps is None
        plan = apply_budget(cfg, 1.0 - sum(float(s.share) for s in cfg.compare.stages), last=True)
        total += plan["steps"] * plan["flops_per_step"]
        assert cfg.trainer.max_steps == plan["steps"]
        assert cfg.evaluation.every_n_steps == math.ceil(plan["steps"] / int(cfg.compare.evaluations))
        spent[arm] = total
    budget = float(_arm(tmp_path, "latte").compare.train_flops)
    for arm, total in spent.items():
        assert abs(total - budget) / budget < 0.05, (arm, total, budget)


def test_step_and_wall_budgets(tmp_path: Path) -> None:
    cfg = _arm(tmp_path, "cmd", extra=["compare.budget=steps", "compare.steps=400"])
    stage = stage_config(cfg, cfg.compare.stages[0])
    assert apply_budget(stage, 0.25, last=False)["steps"] == 100
    assert apply_budget(cfg, 0.75, last=True)["steps"] == 300
    cfg = _arm(tmp_path, "latte", extra=["compare.budget=wall", "compare.seconds=3725"])
    plan = apply_budget(cfg, 1.0, last=True)
    assert plan["steps"] is None and cfg.trainer.max_time == "00:01:02:05"


def test_a_stage_config_is_the_arm_with_the_stage_model_in_its_own_folder(tmp_path: Path) -> None:
    cfg = _arm(tmp_path, "cmd")
    stage = stage_config(cfg, cfg.compare.stages[0])
    assert str(stage.model._target_).endswith("CMDAutoencoder") and stage.model.size == "tiny"
    assert Path(stage.paths.run_dir) == tmp_path / "run" / "autoencoder"
    assert list(stage.compare.stages) == [] and stage.data == cfg.data
    assert OmegaConf.select(cfg, "model._target_").endswith("CMDDenoisers")  # the arm itself is unchanged


def test_run_arm_trains_the_stages_first_and_skips_finished_ones(tmp_path: Path) -> None:
    cfg = _arm(tmp_path, "cmd", extra=["compare.budget=steps", "compare.steps=40", "compare.sample_videos=0"])
    calls: list[DictConfig] = []

    def fake_train(stage: DictConfig) -> dict[str, Any]:
        calls.append(stage)
        run_dir = Path(stage.paths.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        steps = int(stage.trainer.max_steps)
        return {
            "run_dir": str(run_dir),
            "checkpoints": str(run_dir / "checkpoints"),
            "global_step": steps,
            "global_rank": 0,
            "train_seconds": 0.5 * steps,
            "exit_code": 0,
        }

    summary = run_arm(cfg, fake_train)
    assert [str(c.model._target_).rsplit(".", 1)[-1] for c in calls] == ["CMDAutoencoder", "CMDDenoisers"]
    assert [int(c.trainer.max_steps) for c in calls] == [10, 30]
    costs = json.loads((tmp_path / "run" / COSTS_FILE).read_text())
    assert costs == json.loads(json.dumps(summary["costs"]))
    first, second = costs["stages"]
    assert (first["name"], first["steps"], second["name"], second["steps"]) == (
        "autoencoder",
        10,
        "diffusion",
        30,
    )
    assert second["flops_offset"] == first["train_flops"] == 10 * first["flops_per_step"]
    assert costs["train_flops"] == first["train_flops"] + second["train_flops"]
    assert costs["train_seconds"] == 20.0 and costs["sample_seconds_per_video"] is None
    assert costs["params"] == first["params"] + second["params"]
    assert costs["sample_flops_per_video"] > 0 and costs["model_calls"] == int(cfg.sampler.steps)
    assert (tmp_path / "run" / "autoencoder" / STAGE_FILE).is_file()
    calls.clear()
    run_arm(cfg, fake_train)  # a rerun (a resumed job) does not train the finished autoencoder again
    assert [str(c.model._target_).rsplit(".", 1)[-1] for c in calls] == ["CMDDenoisers"]


def test_every_rank_trains_every_stage(tmp_path: Path) -> None:
    """Under DDP started outside fit (torchrun, SLURM) each rank runs run_arm: a rank other than 0 must go
    on to the diffusion stage (else rank 0 waits for it forever), writing neither stage.json nor costs."""
    cfg = _arm(tmp_path, "cmd", extra=["compare.budget=steps", "compare.steps=40", "compare.sample_videos=0"])
    trained: list[str] = []

    def rank_one(stage: DictConfig) -> dict[str, Any]:
        trained.append(str(stage.model._target_).rsplit(".", 1)[-1])
        run_dir = Path(stage.paths.run_dir)
        return {
            "run_dir": str(run_dir),
            "checkpoints": str(run_dir / "checkpoints"),
            "global_step": int(stage.trainer.max_steps),
            "global_rank": 1,
            "train_seconds": 1.0,
            "exit_code": 0,
        }

    summary = run_arm(cfg, rank_one)
    assert trained == ["CMDAutoencoder", "CMDDenoisers"] and "costs" not in summary
    assert not (tmp_path / "run" / "autoencoder" / STAGE_FILE).exists()
    assert not (tmp_path / "run" / COSTS_FILE).exists()


# ------------------------------------------------------------------------------------------------ end to end
def test_two_arm_sweep_runs_end_to_end_into_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    quick = [item for item in QUICK_SWEEP if not item.startswith(("trainer.max_steps", "trainer.val_check"))]
    quick = [item for item in quick if not item.startswith("evaluation.every_n_steps")]
    command = [
        sys.executable,
        "-m",
        "vidgen.train",
        "-m",
        "experiment=compare/methods",
        "scale=compare/tiny",
        "arm=latte,cmd",
        "compare.budget=steps",
        "compare.steps=4",
        "compare.evaluations=2",
        "compare.sample_videos=1",
        *quick,
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    costs = [json.loads((job / COSTS_FILE).read_text()) for job in jobs]
    assert [c["arm"] for c in costs] == ["latte", "cmd"]
    assert [[s["steps"] for s in c["stages"]] for c in costs] == [[4], [1, 3]]
    for job, cost in zip(jobs, costs, strict=True):
        steps = [
            json.loads(line)["step"] for line in (job / "metrics_history.jsonl").read_text().splitlines()
        ]
        assert steps == [2, cost["stages"][-1]["steps"]]  # halfway and at the end
        assert cost["sample_seconds_per_video"] > 0 and cost["peak_memory_bytes"] > 0
    assert (jobs[1] / "autoencoder" / "checkpoints" / "last.ckpt").is_file()

    report = load_script("compare", "report")
    out = tmp_path / "report"
    assert report.main([str(sweep), "--output-dir", str(out)]) == 0
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[1:]]
    assert header[:3] == ["arm", "method", "seeds (n)"] and "synthetic_fvd" in header
    assert "synthetic_structure/object_presence" in header
    assert [row[0] for row in rows] == ["latte", "cmd"]
    assert rows[1][header.index("steps per stage")] == "1 + 3"
    assert rows[0][header.index("params")] == f"{costs[0]['params']:,}"
    from PIL import Image

    for name in ("report_budget.png", "report_pareto.png"):
        with Image.open(out / name) as image:
            assert image.size[0] > 200 and len(set(image.convert("L").getdata())) > 2


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc only")
def test_each_job_gets_its_own_peak_memory() -> None:
    """The jobs of a multirun share a process: a job's peak must not include an earlier job's, and where the
    kernel does not reset the peak (some sandboxes accept the write and keep it) the kind must say so."""
    from vidgen.benchmark.memory import RSS_PEAK, RSS_SINCE_START, peak_memory, reset_peak_memory

    size = 64 * 2**20
    reset_peak_memory()
    big = mmap.mmap(-1, size)  # 64 MiB of the process's own pages, touched, and given back to the OS on close
    big.write(b"\x01" * size)
    busy, _ = peak_memory()
    big.close()
    reset_peak_memory()
    after, kind = peak_memory()
    if kind == RSS_PEAK:
        assert busy - after > 48 * 2**20
    else:
        assert kind == RSS_SINCE_START and after >= busy


def test_a_peak_reset_that_does_not_take_is_reported_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that keeps the old peak after the reset: the peak is labelled as the whole process's."""
    from vidgen.benchmark import memory

    status = {"VmHWM": 900 * 2**20, "VmRSS": 300 * 2**20}
    monkeypatch.setattr(memory, "_status_kib", status.get)
    memory.reset_peak_memory()
    assert memory.peak_memory() == (900 * 2**20, memory.RSS_SINCE_START)
    status["VmHWM"] = 301 * 2**20  # a reset that took: the peak is back to the RSS of the moment
    memory.reset_peak_memory()
    assert memory.peak_memory() == (301 * 2**20, memory.RSS_PEAK)
