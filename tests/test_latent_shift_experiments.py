"""The Latent-Shift ablation experiments (conf/experiment/latent_shift/*.yaml) at both of their scales
(conf/scale/latent_shift/*.yaml).

Checked: every ablation composes at ``scale=latent_shift/tiny`` and ``scale=latent_shift/paper`` (required; a
Latte scale is refused naming ``scale``, and a Latte experiment refuses a Latent-Shift scale) into a sweep
whose ``hydra.sweeper.params`` vary exactly its own axis; every tiny arm validates and builds (the real model,
text conditioner and data, one training loss) with equal budgets and periodic evaluation on; every paper arm
validates and builds on the meta device without any weights present; the tiny text encoder script writes
files the text conditioner loads, and a missing one stops the run naming the key and the script; the T2I
script's caption-colour metric scores real clips right. Multiprocess (a multirun in a subprocess, about 30 s):
the tiny ``temporal`` sweep runs end to end for a couple of steps, the sweep report and the T2I script read
it; the other two sweeps run under ``make test-slow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationToMissingValueError
from torch.utils.data import default_collate

from tests.conftest import CONFIG_DIR, attention_heads
from tests.experiment_scripts import QUICK_SWEEP, load_script, run_sweep, sweep_values
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module

ABLATIONS = ("temporal", "shift_fraction", "t2i")
SCALES = ("latent_shift/tiny", "latent_shift/small", "latent_shift/paper")
MODELS = ["latent_shift", "latent_vdm", "latent_2d"]
FRACTIONS = ["0.125", "0.25", "0.3333333333333333"]

#: ablation -> (swept key, its values), the same at both scales
AXES: dict[str, tuple[str, list[str]]] = {
    "temporal": ("model", MODELS),
    "shift_fraction": ("model.shift.fraction", FRACTIONS),
    "t2i": ("model", MODELS),
}
#: trainable parameters of the tiny arms (synthetic RGB, learned variance, 32-d text) and of the paper arms
#: (Stable Diffusion 1.x's U-Net; Latent-VDM adds 16 temporal attention layers)
TINY_PARAMS = {"latent_shift": 793_254, "latent_vdm": 822_886, "latent_2d": 793_254}
#: the small scale's arms: the same U-Net without the variance outputs (fixed variance)
SMALL_PARAMS = {"latent_shift": 792_387, "latent_vdm": 822_019, "latent_2d": 792_387}
PAPER_PARAMS = {"latent_shift": 859_520_964, "latent_vdm": 909_157_444, "latent_2d": 859_520_964}


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """The models here are tiny (or on the meta device): intra-op threads only add overhead, which is large
    on a busy two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _with_hydra(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=True)


def _compose(overrides: list[str], root: Path) -> DictConfig:
    """The training config (no Hydra node) with every path under ``root``."""
    paths = [
        f"paths.output_root={root}",
        f"paths.run_dir={root / 'run'}",
        f"paths.cache_dir={root / 'cache'}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=[*overrides, *paths])


def _arms(ablation: str, scale: str) -> list[list[str]]:
    cfg = _with_hydra([f"experiment=latent_shift/{ablation}", f"scale={scale}"])
    sweep = sweep_values(cfg)
    key, values = AXES[ablation]
    fixed = [f"{k}={v[0]}" for k, v in sweep.items() if k != key]
    return [[f"{key}={value}", *fixed] for value in values]


def _budget(cfg: DictConfig) -> dict[str, Any]:
    keys = (
        "trainer.max_steps",
        "data",
        "optim",
        "ema",
        "diffusion",
        "conditioner",
        "autoencoder",
        "evaluation",
        "sampler",
        "metrics",
        "guidance_scale",
        "seed",
    )
    return {k: OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, k)}))["v"] for k in keys}


@pytest.fixture(scope="module")
def tiny_clip_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output root holding the tiny text encoder, made by the real script."""
    root = tmp_path_factory.mktemp("latent_shift_outputs")
    assert load_script("latent_shift", "make_tiny_text_encoder").main([f"paths.output_root={root}"]) == 0
    return root


# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_each_ablation_sweeps_only_its_axis(ablation: str, scale: str, tmp_path: Path) -> None:
    cfg = _with_hydra([f"experiment=latent_shift/{ablation}", f"scale={scale}"])
    assert cfg.task_name == f"latent_shift_{ablation}" and cfg.experiment_family == "latent_shift"
    choices = cfg.hydra.runtime.choices
    assert choices.scale == scale and cfg.scale.family == "latent_shift"
    assert cfg.scale.name == scale.rsplit("/", 1)[-1]
    sweep = sweep_values(cfg)
    varying = {k: v for k, v in sweep.items() if len(v) > 1}
    assert varying == {AXES[ablation][0]: AXES[ablation][1]}
    assert choices.model == "latent_shift"  # the non-swept default of every experiment
    assert cfg.evaluation.at_end is True
    if scale == "latent_shift/small":  # at the end only
        assert cfg.evaluation.every_n_steps is None
    else:
        assert cfg.trainer.max_steps % cfg.evaluation.every_n_steps == 0
    assert cfg.conditioner.kind == "text" and cfg.conditioner.drop_prob > 0  # captions, dropout for guidance
    if scale == "latent_shift/small":  # the demo recipe's diffusion, sampler, batch and objects
        assert (choices.data, choices.trainer, choices.recipe) == ("synthetic", "cpu", "synthetic")
        assert (choices.autoencoder, choices.metrics, choices.diffusion) == (
            "identity",
            "synthetic",
            "recipe",
        )
        assert cfg.model.size == "tiny" and cfg.model.head_width == 32 and cfg.model.pretrained_path is None
        resolved = OmegaConf.to_container(cfg.diffusion, resolve=True)
        assert (resolved["schedule"], resolved["learn_sigma"], resolved["loss"]) == (
            "cosine",
            False,
            "simple",
        )
        assert resolved["min_snr_gamma"] == 5 and resolved["prediction"] == "v"
        assert cfg.data.batch_size == 8 and list(cfg.data.object_size) == [0.45, 0.55]
        assert (cfg.sampler.name, cfg.sampler.steps, cfg.trainer.max_steps) == ("ddpm", 100, 1000)
        assert cfg.conditioner.text_dim == 32 and cfg.guidance_scale == 1.0
    elif scale == "latent_shift/tiny":
        assert (choices.data, choices.trainer, choices.recipe) == ("synthetic", "cpu", "synthetic")
        assert (choices.autoencoder, choices.metrics) == ("identity", "synthetic")
        assert set(cfg.metrics) == {"synthetic_fvd", "synthetic_structure"}
        assert cfg.model.size == "tiny" and cfg.model.pretrained_path is None
        assert cfg.data.num_frames == 8 and cfg.data.resolution == 16 and cfg.trainer.accelerator == "cpu"
        assert cfg.diffusion.prediction == "v" and cfg.data.batch_size == 16  # the CPU recipe
        assert (cfg.sampler.name, cfg.sampler.steps) == ("ddim", 50)
        assert cfg.conditioner.text_dim == 32 and cfg.conditioner.model_name.endswith(
            "latent_shift_tiny_clip/latent-shift-tiny-clip.json"
        )
    else:
        assert (choices.data, choices.trainer, choices.recipe) == ("webvid", "ddp", "webvid")
        assert (choices.autoencoder, choices.diffusion, choices.metrics) == ("sd_vae", "sd", "webvid")
        assert set(cfg.metrics) == {"fvd", "clipsim"}
        plain = _compose([f"experiment=latent_shift/{ablation}", f"scale={scale}"], tmp_path)
        resolved = OmegaConf.to_container(plain, resolve=True)
        sd = resolved["paths"]["stable_diffusion"]
        assert resolved["model"]["size"] == "sd" and resolved["model"]["pretrained_path"] == sd
        assert (resolved["autoencoder"]["path"], resolved["autoencoder"]["subfolder"]) == (sd, "vae")
        assert (
            resolved["conditioner"]["path"] == sd
            and resolved["conditioner"]["model_name"] == "ViT-L-14-quickgelu"
        )
        assert resolved["model"]["cross_attention_dim"] == 768 and resolved["model"]["input_size"] == 32
        assert (cfg.data.num_frames, cfg.data.resolution) == (16, 256)
        assert (cfg.diffusion.schedule, cfg.diffusion.prediction, cfg.diffusion.learn_sigma) == (
            "scaled_linear",
            "eps",
            False,
        )
        assert (cfg.sampler.name, cfg.sampler.steps) == ("ddpm", 100) and cfg.guidance_scale > 1
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.precision == "bf16-mixed"
        assert cfg.optim.weight_decay == 0  # Adam


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_the_scale_is_required_and_names_the_output_folders(ablation: str, tmp_path: Path) -> None:
    cfg = _with_hydra([f"experiment=latent_shift/{ablation}"])
    with pytest.raises(InterpolationToMissingValueError, match="Missing mandatory value: scale"):
        OmegaConf.to_container(cfg.hydra.sweep, resolve=True)
    with pytest.raises(ConfigError) as info:  # the start-up check, for a run whose folders do not use it
        validate_config(_compose([f"experiment=latent_shift/{ablation}"], tmp_path))
    assert info.value.key == "scale" and "scale=latent_shift/tiny" in str(info.value)
    cfg = _with_hydra(
        [f"experiment=latent_shift/{ablation}", "scale=latent_shift/tiny", "paths.output_root=outputs"]
    )
    assert str(cfg.hydra.sweep.dir).startswith(f"outputs/latent_shift_{ablation}/multiruns/tiny_")
    assert str(cfg.hydra.run.dir).startswith(f"outputs/latent_shift_{ablation}/runs/tiny_")


@pytest.mark.parametrize("latte_scale", ["tiny", "paper"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_a_latte_scale_is_refused_naming_scale(ablation: str, latte_scale: str, tmp_path: Path) -> None:
    cfg = _compose([f"experiment=latent_shift/{ablation}", f"scale={latte_scale}"], tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == "scale", str(info.value)
    assert "latent_shift/tiny" in str(info.value) and "latte scale" in str(info.value)


@pytest.mark.parametrize("scale", SCALES)
def test_a_latte_experiment_refuses_a_latent_shift_scale(scale: str, tmp_path: Path) -> None:
    cfg = _compose(["experiment=latte/variants", f"scale={scale}"], tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == "scale" and "scale=tiny, scale=small or scale=paper" in str(info.value)


@pytest.mark.parametrize("scale", ["latent_shift/tiny", "latent_shift/small"])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_cpu_arm_builds_with_the_same_budget(ablation: str, scale: str, tiny_clip_root: Path) -> None:
    expected = TINY_PARAMS if scale == "latent_shift/tiny" else SMALL_PARAMS
    budgets, params, fractions = [], {}, []
    for arm in _arms(ablation, scale):
        cfg = _compose([f"experiment=latent_shift/{ablation}", f"scale={scale}", *arm], tiny_clip_root)
        validate_config(cfg)
        budget = _budget(cfg)
        budgets.append(budget)
        module = build_module(cfg)
        denoiser = module.denoiser
        params[str(denoiser.temporal)] = denoiser.num_params()
        fractions.append(denoiser.shift_fraction)
        if scale == "latent_shift/small":  # one head per 32 channels in every attention layer
            assert set(attention_heads(denoiser.unet)) == {(32, 1), (64, 2)}
        # one training loss through the real module: text conditioner, caption dropout, diffusion
        data = instantiate_node(cfg.data)
        batch = default_collate([data.train_set[i] for i in range(2)])
        assert batch["video"].shape == (2, 3, 8, 16, 16) and len(batch["caption"]) == 2
        losses = module._diffusion_losses(
            module.denoiser, batch, torch.Generator().manual_seed(0), train=True
        )
        assert torch.isfinite(losses["loss"]).all()
    for budget in budgets[1:]:  # only the swept key differs (the model node holds it)
        assert budget == budgets[0]
    if ablation == "shift_fraction":
        assert fractions == [float(f) for f in FRACTIONS] and set(params) == {"shift"}
        assert params["shift"] == expected["latent_shift"]
    else:
        assert params == {
            "shift": expected["latent_shift"],
            "attention": expected["latent_vdm"],
            "none": expected["latent_2d"],
        }


_META_PARAMS: dict[tuple[str, float], int] = {}


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_every_paper_arm_validates_and_builds_on_the_meta_device(ablation: str, tmp_path: Path) -> None:
    budgets = []
    for arm in _arms(ablation, "latent_shift/paper"):
        cfg = _compose([f"experiment=latent_shift/{ablation}", "scale=latent_shift/paper", *arm], tmp_path)
        validate_config(cfg)  # no weights, no data needed to validate
        budgets.append(_budget(cfg))
        assert OmegaConf.select(cfg, "model.pretrained_path") == OmegaConf.select(
            cfg, "paths.stable_diffusion"
        )
        node = OmegaConf.to_container(cfg.model, resolve=True)
        key = (node["temporal"], node["shift"]["fraction"])
        if key not in _META_PARAMS:  # the U-Net is the same for every ablation: build each arm once
            with torch.device("meta"):
                model = instantiate_node(OmegaConf.merge(cfg.model, {"pretrained_path": None}))
            _META_PARAMS[key] = model.num_params()
        name = {"shift": "latent_shift", "attention": "latent_vdm", "none": "latent_2d"}[node["temporal"]]
        assert _META_PARAMS[key] == PAPER_PARAMS[name]
    for budget in budgets[1:]:
        assert budget == budgets[0]


def test_paper_weights_missing_fail_naming_the_key(tmp_path: Path) -> None:
    cfg = _compose(["experiment=latent_shift/temporal", "scale=latent_shift/paper"], tmp_path)
    validate_config(cfg)
    with pytest.raises(ConfigError) as info:
        instantiate_node(cfg.model)
    assert info.value.key == "model.pretrained_path" and "stable-diffusion-v1-5" in str(info.value)


def test_make_tiny_text_encoder_writes_what_the_text_conditioner_loads(
    tiny_clip_root: Path, tmp_path: Path
) -> None:
    folder = tiny_clip_root / "latent_shift_tiny_clip"
    assert {p.name for p in folder.iterdir()} == {
        "tiny_clip.bin",
        "latent-shift-tiny-clip.json",
        "tiny_clip.provenance.json",
    }
    state = torch.load(folder / "tiny_clip.bin", weights_only=True)
    assert state["token_embedding.weight"].shape == (49408, 32) and any(
        k.startswith("visual.") for k in state
    )
    cfg = _compose(["experiment=latent_shift/temporal", "scale=latent_shift/tiny"], tiny_clip_root)
    conditioner = instantiate_node(cfg.conditioner)
    assert conditioner.source == "open_clip" and conditioner.text_dim == 32
    states, mask, _ = conditioner.encode(["a red square moving left", "a blue circle moving up", ""])
    assert states.shape == (3, 77, 32) and not torch.allclose(states[0], states[1])
    assert mask[0].sum() == 7  # <start> a red square moving left <end>
    # the same seed writes the same weights
    again = tmp_path / "again"
    assert load_script("latent_shift", "make_tiny_text_encoder").main([f"paths.output_root={again}"]) == 0
    other = torch.load(again / "latent_shift_tiny_clip" / "tiny_clip.bin", weights_only=True)
    assert all(torch.equal(state[k], other[k]) for k in state)


def test_a_missing_text_encoder_names_the_key_and_the_script(tmp_path: Path) -> None:
    cfg = _compose(["experiment=latent_shift/shift_fraction", "scale=latent_shift/tiny"], tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == "conditioner.path"
    assert "tiny_clip.bin" in str(info.value)
    assert "python experiments/latent_shift/make_tiny_text_encoder.py" in str(info.value)


def test_caption_colour_scores_real_clips_and_wrong_captions() -> None:
    from vidgen.data.synthetic import PALETTE, SyntheticVideoDataset
    from vidgen.metrics.evaluator import frames_to_uint8_batch
    from vidgen.metrics.synthetic import SyntheticStructure

    t2i = load_script("latent_shift", "t2i")
    data = SyntheticVideoDataset(num_clips=6, num_frames=1, resolution=16, split="val", seed=0)
    items = [data[i] for i in range(6)]
    videos = frames_to_uint8_batch(torch.stack([item["video"] for item in items]))
    captions = [item["caption"] for item in items]
    metric = t2i.CaptionColour(6, SyntheticStructure(num_fake=6).analyzer)
    metric.update_fake(videos, captions=captions)
    assert metric.compute() == {"caption_colour/match": 1.0}
    names = list(PALETTE)
    wrong = []
    for caption in captions:
        colour = metric.caption_colour(caption)
        wrong.append(caption.replace(colour, names[(names.index(colour) + 1) % len(names)], 1))
    metric = t2i.CaptionColour(6, SyntheticStructure(num_fake=6).analyzer)
    metric.update_fake(videos, captions=wrong)
    assert metric.compute() == {"caption_colour/match": 0.0}
    blank = torch.full_like(videos, 10)  # no object: a miss whatever the caption
    metric = t2i.CaptionColour(6, SyntheticStructure(num_fake=6).analyzer)
    metric.update_fake(blank, captions=captions)
    assert metric.compute() == {"caption_colour/match": 0.0}
    assert t2i.modes_of("shift") == [("kept", None), ("removed", "none")]
    assert t2i.modes_of("none") == [("image model", None)]


# ---------------------------------------------------------------------------------------------------------
# The sweeps themselves (each a multirun in a subprocess, about 20 s on two idle cores)

QUICK = [*QUICK_SWEEP, "callbacks.model_checkpoint.every_n_train_steps=1"]


# CI runs the temporal sweep; the other two (same code path, one axis each) run under `make test-slow`
@pytest.mark.multiprocess
@pytest.mark.parametrize(
    "ablation", [a if a == "temporal" else pytest.param(a, marks=pytest.mark.slow) for a in ABLATIONS]
)
def test_tiny_sweep_runs_and_reports(ablation: str, tiny_clip_root: Path) -> None:
    sweep_dir = tiny_clip_root / "sweeps" / ablation
    key, values = AXES[ablation]
    overrides = [f"experiment=latent_shift/{ablation}", "scale=latent_shift/tiny", *QUICK]
    paths = [f"paths.output_root={tiny_clip_root}", f"paths.cache_dir={tiny_clip_root / 'cache'}"]
    jobs = run_sweep([*overrides, *paths], sweep_dir, len(values))
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()

    report = load_script("latent_shift", "report")
    written = report.write_report(sweep_dir)
    text = written["markdown"].read_text()
    for value in values:
        assert f"{key}={value}" in text
    assert "train s/step" in text and "sample s/clip (eval)" in text
    assert written["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    arms = report.collect(sweep_dir)
    for arm in arms:
        speed = arm["speed"]
        assert speed["s_per_step"] > 0 and speed["clips_per_s"] > 0 and speed["eval_s_per_clip"] > 0
        assert arm["params"] in TINY_PARAMS.values() and arm["flops"] > 0

    if ablation in ("temporal", "t2i"):  # the T2I evaluation reads the same sweep folder
        t2i = load_script("latent_shift", "t2i")
        out = t2i.run([sweep_dir], num=2, batch_size=2, output_dir=sweep_dir / "t2i")
        rows = json.loads(out["json"].read_text())["rows"]
        assert [(r["arm"], r["mode"]) for r in rows] == [
            ("model=latent_shift", "kept"),
            ("model=latent_shift", "removed"),
            ("model=latent_vdm", "kept"),
            ("model=latent_vdm", "removed"),
            ("model=latent_2d", "image model"),
        ]
        for row in rows:
            assert row["frames"] == 1 and set(row["metrics"]) >= {
                "synthetic_structure/object_presence",
                "caption_colour/match",
            }
            assert (sweep_dir / "t2i" / row["grid"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
