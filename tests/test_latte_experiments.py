"""The Latte ablation experiments (conf/experiment/latte/*.yaml) at their scales (conf/scale/*.yaml).

Checked: every ablation composes at ``scale=tiny``, ``scale=small`` and ``scale=paper`` (required) into a sweep whose
``hydra.sweeper.params`` vary exactly its own axis, with the expected values; every arm validates and builds
(tiny and small: the real model and data module; paper: the model on the meta device) with equal training budgets and
periodic evaluation on; the tiny DiT stand-in script writes a checkpoint in DiT's layout that initialises the
tiny Latte; and (multiprocess: a multirun in a subprocess each, about 2 minutes for all) every tiny sweep
runs end to end for a couple of steps, evaluating at every step, and reports.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError

from tests.conftest import CONFIG_DIR, compose_config
from tests.experiment_scripts import QUICK_SWEEP, load_script, run_sweep, sweep_values
from vidgen.conditioning import Cond
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config

ABLATIONS = (
    "patch_embed",
    "variants",
    "injection",
    "temporal_position",
    "pretrained",
    "joint_training",
    "sampling_interval",
    "model_size",
)
SCALES = ("tiny", "small", "paper")

TINY_DIT = "outputs/latte_tiny_dit/tiny_dit.pt"
SMALL_DIT = "outputs/latte_small_dit/tiny_dit.pt"
PAPER_DIT = "weights/DiT-XL-2-256x256.pt"

#: ablation -> scale -> (swept key, its values)
AXES: dict[str, dict[str, tuple[str, list[str]]]] = {
    "patch_embed": dict.fromkeys(SCALES, ("model.patch_embed", ["frame", "tube"])),
    "variants": dict.fromkeys(SCALES, ("model", ["latte_v1", "latte_v2", "latte_v3_matched", "latte_v4"])),
    "injection": dict.fromkeys(SCALES, ("model.injection", ["adaln", "tokens"])),
    "temporal_position": dict.fromkeys(SCALES, ("model.temporal_position", ["absolute", "rope"])),
    "pretrained": {
        "tiny": ("pretrained.path", ["null", TINY_DIT]),
        "small": ("pretrained.path", ["null", SMALL_DIT]),
        "paper": ("pretrained.path", ["null", PAPER_DIT]),
    },
    "joint_training": {
        "tiny": ("data.joint_image_frames", ["0", "4"]),
        "small": ("data.joint_image_frames", ["0", "4"]),
        "paper": ("data.joint_image_frames", ["0", "8"]),
    },
    "sampling_interval": dict.fromkeys(SCALES, ("data.frame_stride", ["1", "2", "3", "4"])),
    "model_size": {
        "tiny": ("model.hidden_size", ["48", "96", "144"]),
        "small": ("model.hidden_size", ["96", "192", "288"]),
        "paper": ("model.size", ["S", "B", "L", "XL"]),
    },
}

# keep the relative defaults of paths (outputs/, weights/) whatever the environment says
_PATHS = ["paths.output_root=outputs", "paths.weights_dir=weights", "paths.cache_dir=outputs/cache"]


def _with_hydra(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def _arms(ablation: str, scale: str) -> list[list[str]]:
    """The overrides of every job of the sweep (the fixed params included)."""
    cfg = _with_hydra([f"experiment=latte/{ablation}", f"scale={scale}", *_PATHS])
    sweep = sweep_values(cfg)
    key, values = AXES[ablation][scale]
    fixed = [f"{k}={v[0]}" for k, v in sweep.items() if k != key]
    return [[f"{key}={value}", *fixed] for value in values]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_each_ablation_sweeps_only_its_axis(ablation: str, scale: str) -> None:
    cfg = _with_hydra([f"experiment=latte/{ablation}", f"scale={scale}", *_PATHS])
    assert cfg.task_name == f"latte_{ablation}"
    assert cfg.hydra.runtime.choices.scale == scale and cfg.scale.name == scale
    sweep = sweep_values(cfg)
    varying = {k: v for k, v in sweep.items() if len(v) > 1}
    key, values = AXES[ablation][scale]
    assert varying == {key: values}
    # evaluated at the end; periodic evaluation on, except at small scale (one more 128-clip evaluation would
    # make its arm slower than the tiny scale's; evaluation.every_n_steps=1000 adds the half-way point)
    assert cfg.evaluation.at_end is True
    if scale == "small":
        assert cfg.evaluation.every_n_steps is None
    else:
        assert cfg.trainer.max_steps % cfg.evaluation.every_n_steps == 0
    choices = cfg.hydra.runtime.choices
    if scale == "tiny":
        assert (choices.data, choices.trainer, choices.recipe) == ("synthetic", "cpu", "synthetic")
        assert set(cfg.metrics) == {"synthetic_fvd", "synthetic_structure"}
        assert cfg.model.size == "tiny" and cfg.data.resolution == 16 and cfg.trainer.accelerator == "cpu"
        assert cfg.trainer.precision == "32-true" and list(cfg.data.object_size) == [0.3, 0.4]
    elif scale == "small":  # the demo's recipe: its model, objects, diffusion, sampler and precision
        assert (choices.data, choices.trainer, choices.recipe) == ("synthetic", "cpu", "synthetic")
        assert set(cfg.metrics) == {"synthetic_fvd", "synthetic_structure"}
        assert (cfg.model.size, cfg.model.patch_size, cfg.data.batch_size) == ("demo", 4, 8)
        assert list(cfg.data.object_size) == [0.45, 0.55] and cfg.trainer.max_steps == 2000
        assert (cfg.diffusion.schedule, cfg.diffusion.learn_sigma, cfg.diffusion.min_snr_gamma) == (
            "cosine",
            False,
            5,
        )
        assert (cfg.sampler.name, cfg.sampler.steps) == ("ddpm", 100)
        assert cfg.trainer.precision in ("bf16-mixed", "32-true")  # the CPU's fast one
    else:
        assert (choices.data, choices.trainer, choices.recipe) == ("faceforensics", "ddp", "faceforensics")
        assert set(cfg.metrics) == {"fvd"} and cfg.autoencoder.kind == "sd_vae"
        assert cfg.model.size == "XL" and cfg.data.num_frames == 16 and cfg.data.frame_stride == 3
        assert cfg.trainer.strategy == "ddp" and cfg.evaluation.num_fake is None  # the FVD protocol


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_the_scale_is_required_and_names_the_output_folders(ablation: str) -> None:
    cfg = _with_hydra([f"experiment=latte/{ablation}", *_PATHS])
    with pytest.raises(InterpolationToMissingValueError, match="Missing mandatory value: scale"):
        OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
    cfg = _with_hydra([f"experiment=latte/{ablation}", "scale=tiny", *_PATHS])
    assert str(cfg.hydra.sweep.dir).startswith(f"outputs/latte_{ablation}/multiruns/tiny_")
    assert str(cfg.hydra.run.dir).startswith(f"outputs/latte_{ablation}/runs/tiny_")


def _budget(cfg: DictConfig) -> dict[str, Any]:
    keys = ("trainer.max_steps", "data.batch_size", "data.num_frames", "optim.lr", "evaluation", "sampler")
    return {k: OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, k)}))["v"] for k in keys}


@pytest.mark.parametrize("scale", ["tiny", "small"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_cpu_arm_builds_with_the_same_budget(ablation: str, scale: str, tmp_path: Path) -> None:
    budgets, params = [], []
    for arm in _arms(ablation, scale):
        cfg = compose_config(
            [f"experiment=latte/{ablation}", f"scale={scale}", *_PATHS, *arm], run_dir=tmp_path
        )
        validate_config(cfg)
        budgets.append(_budget(cfg))
        model = instantiate_node(cfg.model)
        params.append(model.num_params())
        datamodule = instantiate_node(cfg.data)
        batch = datamodule.training_dataset()[0]
        extra = int(cfg.data.joint_image_frames)
        assert batch["video"].shape == (3, cfg.data.num_frames + extra, 16, 16)
        # one training step's forward on the arm's own batch layout
        x = batch["video"][None]
        cond = Cond(num_video_frames=cfg.data.num_frames if extra else None)
        out = model(x, torch.tensor([500]), cond)
        assert out.shape == (1, 6 if cfg.diffusion.learn_sigma else 3, x.shape[2], 16, 16)
    assert all(b == budgets[0] for b in budgets)
    if ablation == "model_size":
        assert params == sorted(params) and len(set(params)) == 3
    if ablation == "variants" and scale == "tiny":  # v3 at 3 blocks: the count nearest v1's at 4 (4: 874,488)
        assert params == [725_496, 725_496, 669_912, 725_496]
    if ablation == "variants" and scale == "small":  # the demo size; v3 at 5 blocks (6 blocks: 5,067,120)
        assert params == [4_177_776, 4_177_776, 4_252_464, 4_177_776]


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_paper_arm_validates_and_builds_on_the_meta_device(ablation: str, tmp_path: Path) -> None:
    budgets, params = [], []
    for arm in _arms(ablation, "paper"):
        cfg = compose_config([f"experiment=latte/{ablation}", "scale=paper", *_PATHS, *arm], run_dir=tmp_path)
        validate_config(cfg)
        budgets.append(_budget(cfg))
        with torch.device("meta"):
            model = instantiate_node(cfg.model)
        params.append(model.num_params())
    assert all(b == budgets[0] for b in budgets)
    if ablation == "variants":  # Table 3: 673.68M, 673.68M, 676.33M, 676.44M; v3 at 23 blocks (28: 822.45M)
        assert params == [673_681_568, 673_681_568, 676_355_360, 673_681_568]
    if ablation == "model_size":  # Table 4 (truncated to two decimals): 32.48M, 129.54M, 456.81M, 673.68M
        assert [math.floor(p / 1e4) / 100 for p in params] == [32.48, 129.54, 456.81, 673.68]
    if ablation in ("pretrained", "joint_training", "sampling_interval", "temporal_position"):
        assert len(set(params)) == 1  # the axis changes no parameter


def test_make_tiny_dit_writes_dit_layout_that_initialises_the_tiny_latte(tmp_path: Path) -> None:
    script = load_script("latte", "make_tiny_dit")
    output = tmp_path / "tiny_dit.pt"
    assert script.main(["--steps", "2", "--batch-size", "4", "--output", str(output)]) == 0
    state = torch.load(output, weights_only=True)
    assert state["pos_embed"].shape == (1, 64, 96)  # (1, h*w, D) as DiT saves it
    assert state["y_embedder.embedding_table.weight"].shape == (22, 96)  # 21 synthetic classes + null
    assert {k for k in state if k.startswith("blocks.")} and not any("temporal" in k for k in state)
    assert (tmp_path / "tiny_dit.json").is_file()

    from vidgen.models.pretrained import init_from_dit

    cfg = compose_config(["experiment=latte/pretrained", "scale=tiny", *_PATHS], run_dir=tmp_path / "run")
    report = init_from_dit(instantiate_node(cfg.model), output)
    assert not report.mismatched
    assert "y_embedder.embedding_table.weight" in report.skipped
    assert all(any(k.startswith(f"blocks.{i}.") for k in report.loaded) for i in range(4))


def test_make_tiny_dit_at_small_scale_takes_the_small_latte_widths(tmp_path: Path) -> None:
    script = load_script("latte", "make_tiny_dit")
    output = tmp_path / "small_dit.pt"
    assert (
        script.main(["--scale", "small", "--steps", "2", "--batch-size", "4", "--output", str(output)]) == 0
    )
    state = torch.load(output, weights_only=True)
    assert state["pos_embed"].shape == (1, 16, 192)  # patch 4 on 16x16: 4x4 patches of width 192
    assert len({k.split(".")[1] for k in state if k.startswith("blocks.")}) == 6
    # patch 4 x 4, 3 channels and no variance outputs (the small scale's fixed variance)
    assert state["final_layer.linear.weight"].shape[0] == 4 * 4 * 3

    from vidgen.models.pretrained import init_from_dit

    cfg = compose_config(["experiment=latte/pretrained", "scale=small", *_PATHS], run_dir=tmp_path / "run")
    report = init_from_dit(instantiate_node(cfg.model), output)
    assert not report.mismatched and all(
        any(k.startswith(f"blocks.{i}.") for k in report.loaded) for i in range(6)
    )


# ---------------------------------------------------------------------------------------------------------
# The sweeps themselves (each a multirun in a subprocess, 10-20 s)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("latte_sweeps")
    dit = root / "tiny_dit.pt"
    assert (
        load_script("latte", "make_tiny_dit").main(
            ["--steps", "2", "--batch-size", "4", "--output", str(dit)]
        )
        == 0
    )
    return {"root": root, "dit": dit, "cache": root / "cache"}


# CI runs the variants sweep; the other seven (same code path, one axis each) run under `make test-slow`
@pytest.mark.multiprocess
@pytest.mark.parametrize(
    "ablation", [a if a == "variants" else pytest.param(a, marks=pytest.mark.slow) for a in ABLATIONS]
)
def test_tiny_sweep_runs_and_reports(ablation: str, shared: dict[str, Path]) -> None:
    sweep_dir = shared["root"] / ablation
    key, values = AXES[ablation]["tiny"]
    overrides = [
        f"experiment=latte/{ablation}",
        "scale=tiny",
        *QUICK_SWEEP,
        f"scale.dit_checkpoint={shared['dit']}",
    ]
    paths = [f"paths.output_root={shared['root'] / 'outputs'}", f"paths.cache_dir={shared['cache']}"]
    jobs = run_sweep([*overrides, *paths], sweep_dir, len(values))
    if ablation == "pretrained":
        assert (
            not (jobs[0] / "pretrained_report.json").exists()
            and (jobs[1] / "pretrained_report.json").exists()
        )

    report = load_script("latte", "report")
    written = report.write_report(sweep_dir)
    text = written["markdown"].read_text()
    for value in values:
        shown = str(shared["dit"]) if value == TINY_DIT else value
        assert f"{key}={shown}" in text
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
