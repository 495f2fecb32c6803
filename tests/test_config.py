"""The config tree composes for every model x data, and bad values fail with the key's name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR, TINY, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.models.latte import Latte

MODELS = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
#: CMD's stage-2 configs: a content model and a motion model, sized on their own (model.content / model.motion)
CMD_STAGE2_MODELS = ("cmd", "cmd_sd")
DATASETS = sorted(p.stem for p in (Path(CONFIG_DIR) / "data").glob("*.yaml"))


def test_groups_exist() -> None:
    for group in (
        "data",
        "model",
        "autoencoder",
        "conditioner",
        "diffusion",
        "sampler",
        "metrics",
        "trainer",
        "callbacks",
        "logger",
        "paths",
        "debug",
        "experiment",
        "recipe",
    ):
        assert (Path(CONFIG_DIR) / group).is_dir(), group
    assert {"cpu", "gpu", "ddp"} <= {p.stem for p in (Path(CONFIG_DIR) / "trainer").glob("*.yaml")}
    assert {"fast_dev_run", "overfit", "limit"} <= {
        p.stem for p in (Path(CONFIG_DIR) / "debug").glob("*.yaml")
    }


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", DATASETS)
def test_every_model_data_pair_composes_validates_and_takes_its_familys_size(
    model: str, data: str, tmp_path: Path
) -> None:
    """Every pair composes and validates, and its recipe sizes each model family on its own: Latte's recipes
    give Latte XL, the U-Net sd and VDM's U-Net its UCF101 size (webvid: its large text-to-video size); one
    family's size never reaches another; the CPU recipe gives every model its tiny size, Latte its demo size
    (with patch 4)."""
    stage2 = model in CMD_STAGE2_MODELS
    extra = []
    if stage2:  # CMD's stage 2 needs a stage-1 checkpoint that exists (its contents are read at build time)
        (tmp_path / "ae.ckpt").touch()
        extra = [f"cmd.autoencoder_ckpt={tmp_path / 'ae.ckpt'}"]
    if data == "ucf101":  # null = counted from data.root at train start (vidgen.data.num_classes); none here
        extra.append("data.num_classes=101")
    cfg = compose_config([f"model={model}", f"data={data}", *extra], run_dir=tmp_path)
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    # every recipe gives a model whose input matches the data's latent shape (CMD's content model: one frame)
    node = cfg.model.content if stage2 else cfg.model
    assert node.num_frames == (1 if stage2 else cfg.data.num_frames)
    assert node.input_size * cfg.autoencoder.downsample == cfg.data.resolution
    assert node.in_channels == cfg.autoencoder.latent_channels
    # the family's size
    if stage2:  # the content DiT is L (cmd_sd: the U-Net's size), the motion DiT B
        sizes = (cfg.model.content.size, cfg.model.motion.size)
        content = "tiny" if data == "synthetic" else ("L" if model == "cmd" else "sd")
        assert sizes == (content, "tiny" if data == "synthetic" else "B")
    elif data == "synthetic":
        assert cfg.model.size == ("demo" if model.startswith("latte_") else "tiny")
        assert not model.startswith("latte_") or cfg.model.patch_size == 4
    else:
        vdm = "t2v_large" if data in ("webvid", "msrvtt") else "ucf101"  # msrvtt: the webvid recipe
        assert cfg.model.size == _family_size(model, latte="XL", unet="sd", vdm=vdm)


def test_default_is_the_demo_latte_on_synthetic(tmp_path: Path) -> None:
    cfg = compose_config([], run_dir=tmp_path)
    assert cfg.data.name == "synthetic" and cfg.model.size == "demo" and cfg.trainer.accelerator == "cpu"
    assert cfg.model.patch_size == 4 and cfg.data.batch_size == 8 and cfg.sampler.steps == 100
    assert cfg.autoencoder.kind == "identity" and list(cfg.data.object_size) == [0.45, 0.55]
    # the recipe's diffusion: v-prediction, cosine schedule, fixed variance, simple loss
    diffusion = dict(cfg.diffusion)
    assert {k: diffusion[k] for k in ("prediction", "schedule", "learn_sigma", "loss")} == {
        "prediction": "v", "schedule": "cosine", "learn_sigma": False, "loss": "simple"
    }  # fmt: skip
    model = instantiate(cfg.model)  # the convention: the model node builds the denoiser itself
    assert isinstance(model, Latte) and not model.learn_sigma and model.out_channels == model.in_channels
    # Latte's own diffusion is one override away, and the ablation scales keep the settings they were measured
    # with (linear betas, learned variance, hybrid loss; the generator's default object size)
    for overrides in (["diffusion=latte"], ["scale=tiny"], ["scale=latent_shift/tiny"], ["scale=cmd/tiny"]):
        node = compose_config(overrides, run_dir=tmp_path).diffusion
        assert (node.schedule, node.learn_sigma, node.loss) == ("linear", True, "hybrid"), overrides
    for scale in ("tiny", "latent_shift/tiny", "cmd/tiny", "vdm/tiny"):
        assert list(compose_config([f"scale={scale}"], run_dir=tmp_path).data.object_size) == [0.3, 0.4]
    # the demo weights its loss by Min-SNR-5 and trains in bf16-mixed where the CPU has bf16 products; every
    # tiny scale keeps the unweighted fp32 training its table was measured with
    assert cfg.diffusion.min_snr_gamma == 5
    for scale in ("tiny", "latent_shift/tiny", "cmd/tiny", "vdm/tiny", "compare/tiny"):
        node = compose_config([f"scale={scale}"], run_dir=tmp_path)
        assert node.trainer.precision == "32-true" and node.diffusion.get("min_snr_gamma") is None, scale


@pytest.mark.parametrize("has_bf16", [True, False, None])
def test_demo_precision_follows_the_cpu(
    has_bf16: bool | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidgen.lit import cpu_precision

    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: has_bf16)
    cfg = compose_config([], run_dir=tmp_path)
    assert cfg.trainer.precision == cfg.sampler.precision == ("bf16-mixed" if has_bf16 else "32-true")
    for scale in ("small", "tiny", "latent_shift/small", "compare/tiny"):  # the tables' fp32 sampling
        assert compose_config([f"scale={scale}"], run_dir=tmp_path).sampler.precision == "32-true", scale
    assert compose_config(["trainer.precision=32-true"], run_dir=tmp_path).trainer.precision == "32-true"


def test_demo_trains_to_a_wall_clock_budget_and_every_scale_to_its_steps(tmp_path: Path) -> None:
    """The demo trains as many steps as fit in 5 min 15 s (capped); one override gives a fixed-length run; the
    ablation scales on the demo's recipe keep their fixed step counts (their tables were measured so)."""
    cfg = compose_config([], run_dir=tmp_path)
    assert (cfg.trainer.max_time, cfg.trainer.max_steps) == ("00:00:05:15", 20000)
    assert (cfg.optim.schedule, cfg.optim.schedule_over) == ("cosine", "auto")  # decays over the budget
    fixed = compose_config(["trainer.max_time=null", "trainer.max_steps=300"], run_dir=tmp_path)
    assert (fixed.trainer.max_time, fixed.trainer.max_steps) == (None, 300)
    for scale, steps in [("small", 2000), ("tiny", 1000), ("latent_shift/small", 1000), ("vdm/tiny", 600)]:
        node = compose_config([f"scale={scale}"], run_dir=tmp_path)
        assert (node.trainer.max_time, node.trainer.max_steps) == (None, steps), scale
        assert node.optim.schedule == "constant", scale  # the rate the tables were measured with
    for scale in ("latent_shift/tiny", "cmd/tiny", "compare/tiny"):
        assert compose_config([f"scale={scale}"], run_dir=tmp_path).trainer.max_time is None, scale


def test_demo_draws_one_time_per_stratum_with_beta2_095_and_the_scales_keep_theirs(tmp_path: Path) -> None:
    """The demo's low-discrepancy draw, Adam beta2 0.95 and peak rate 2e-3 reach its diffusion and optimiser;
    the measured scales (and Latte's own diffusion) keep the independent draw, beta2 0.999 and rate 1e-3 their
    tables were measured with."""
    cfg = compose_config([], run_dir=tmp_path)
    assert cfg.diffusion.timestep_sampling == "low_discrepancy" and list(cfg.optim.betas) == [0.9, 0.95]
    assert cfg.optim.lr == 2.0e-3
    assert instantiate_node(cfg.diffusion).timestep_sampling == "low_discrepancy"
    assert compose_config(["diffusion=latte"], run_dir=tmp_path).diffusion.timestep_sampling == "uniform"
    scales = (
        "small",
        "tiny",
        "latent_shift/small",
        "latent_shift/tiny",
        "vdm/tiny",
        "cmd/tiny",
        "compare/tiny",
    )
    for scale in scales:
        node = compose_config([f"scale={scale}"], run_dir=tmp_path)
        assert node.diffusion.timestep_sampling == "uniform", scale
        assert list(node.optim.betas) == [0.9, 0.999], scale
        assert node.optim.lr == 1.0e-3, scale


def test_demo_takes_the_exact_gelu_and_the_tables_the_tanh_one(tmp_path: Path) -> None:
    """The recipe's MLP activation reaches Latte only; the paper recipes and the measured scales keep DiT's."""
    assert compose_config([], run_dir=tmp_path).model.mlp_activation == "gelu"
    assert compose_config(["model=latte_v3"], run_dir=tmp_path).model.mlp_activation == "gelu"
    assert compose_config(["data=ucf101"], run_dir=tmp_path).model.mlp_activation == "gelu_tanh"
    for scale in ("tiny", "small", "cmd/tiny", "compare/tiny"):
        cfg = compose_config([f"scale={scale}", "model=latte_v1"], run_dir=tmp_path)
        assert cfg.model.mlp_activation == "gelu_tanh", scale
    assert "mlp_activation" not in compose_config(["model=latent_shift"], run_dir=tmp_path).model
    assert compose_config([], run_dir=tmp_path).optim.fused is True


def test_real_data_recipe_is_the_papers(tmp_path: Path) -> None:
    cfg = compose_config(["data=ucf101"], run_dir=tmp_path)
    assert (
        cfg.model.size == "XL"
        and cfg.autoencoder.kind == "sd_vae"
        and cfg.autoencoder.scaling_factor == 0.18215
    )
    assert cfg.data.num_frames == 16 and cfg.data.frame_stride == 3 and cfg.data.resolution == 256
    assert cfg.model.input_size == 32 and cfg.conditioner.kind == "class"
    # data.num_classes: null is counted from the data at train start (vidgen.data.num_classes), then the
    # conditioner and the model's label table read it through ${data.num_classes}
    assert cfg.data.num_classes is None and cfg.data.split == "all"
    cfg.data.num_classes = 101
    assert cfg.model.num_classes == 101
    assert cfg.diffusion.schedule == "linear" and cfg.diffusion.learn_sigma and cfg.diffusion.loss == "hybrid"
    assert cfg.sampler.name == "ddpm" and cfg.sampler.steps == 250 and cfg.guidance_scale == 7.0


def _family_size(
    model: str, latte: str, unet: str, vdm: str = "ucf101", diffusers: str = "modelscope"
) -> str:
    """The size expected for ``model``'s family: Latte, the latent U-Net, VDM's 3D U-Net or diffusers' 3D
    U-Net (the latter two default to their model file's size, ucf101 and modelscope)."""
    if model.startswith("latte_"):
        return latte
    return {"vdm_unet3d": vdm, "diffusers_unet3d": diffusers, "cmd_ae": "paper"}.get(model, unet)


@pytest.mark.parametrize("model", ["latte_v1", "latent_shift"])
def test_without_a_recipe_each_model_keeps_its_size_and_the_command_line_wins(
    model: str, tmp_path: Path
) -> None:
    cfg = compose_config([f"model={model}", "data=ucf101", "recipe=none"], run_dir=tmp_path)
    assert cfg.model.size == _family_size(model, latte="S", unet="sd")
    cfg = compose_config([f"model={model}", "data=ucf101", "recipe=synthetic"], run_dir=tmp_path)
    assert cfg.model.size == _family_size(model, latte="demo", unet="tiny")
    cfg = compose_config([f"model={model}", "data=ucf101", "model.size=tiny"], run_dir=tmp_path)
    assert cfg.model.size == "tiny"


@pytest.mark.parametrize("data", [d for d in DATASETS if d != "synthetic"])
def test_paper_recipes_take_the_sd_vae_from_its_one_file(data: str, tmp_path: Path) -> None:
    cfg = compose_config([f"data={data}"], run_dir=tmp_path)
    expected = OmegaConf.to_container(OmegaConf.load(Path(CONFIG_DIR) / "autoencoder" / "sd_vae.yaml"))
    if data in ("webvid", "msrvtt"):  # Latent-Shift's recipe: the VAE of the local Stable Diffusion folder
        expected.update(path="${paths.stable_diffusion}", subfolder="vae")
    assert OmegaConf.to_container(cfg.autoencoder) == expected


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (Path(CONFIG_DIR) / "recipe").glob("*.yaml")))
def test_recipes_set_no_model_key(recipe: str) -> None:
    """A recipe serves every model: model values are per family (model_size_by_family), never model.*."""
    node = OmegaConf.load(Path(CONFIG_DIR) / "recipe" / f"{recipe}.yaml")
    assert "model" not in node


def test_experiment_and_debug_configs_compose(tmp_path: Path) -> None:
    cfg = compose_config(["experiment=latte_ucf101"], run_dir=tmp_path)
    assert cfg.data.name == "ucf101" and cfg.trainer.strategy == "ddp"
    cfg = compose_config(["debug=fast_dev_run"], run_dir=tmp_path)
    assert cfg.trainer.fast_dev_run is True


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=abc", "optim.lr"),
        ("ema.decay=1.5", "ema.decay"),
        ("sampler.name=euler", "sampler.name"),
        ("sampler.steps=0", "sampler.steps"),
        ("sampler.precision=16-mixed", "sampler.precision"),
        ("diffusion.prediction=score", "diffusion.prediction"),
        ("diffusion.schedule=quadratic", "diffusion.schedule"),
        ("diffusion.timestep_sampling=stratified", "diffusion.timestep_sampling"),
        ("diffusion=vdm diffusion.timestep_sampling=sobol", "diffusion.timestep_sampling"),
        ("diffusion.loss=hybrid", "diffusion.loss"),  # the hybrid loss needs the learned variance
        ("conditioner.drop_prob=1.5", "conditioner.drop_prob"),
        ("+model.n_layers=3", "model.n_layers"),
        ("+data.colour=red", "data.colour"),
        ("+trainer.max_stepz=3", "trainer.max_stepz"),
        ("guidance_scale=4", "guidance_scale"),
        ("samples.fps=0", "samples.fps"),
        ("seed=abc", "seed"),
    ],
)
def test_invalid_value_names_the_key(override: str, key: str, tmp_path: Path) -> None:
    cfg = compose_config(override.split(), run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == key, str(info.value)
    assert str(info.value).startswith(key)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.size=M", "model.size"),
        ("model.variant=7", "model.variant"),
        ("data.num_frames=0", "data.num_frames"),
        ("data.resolution=31", "model.input_size"),
        ("model.num_heads=3", "model.num_heads"),
    ],
)
def test_constructor_checks_name_the_key(override: str, key: str, tmp_path: Path) -> None:
    cfg = compose_config([*TINY, override], run_dir=tmp_path)
    validate_config(cfg)  # types are fine; the constructors check the values
    with pytest.raises(ConfigError) as info:
        instantiate_node(cfg.data)
        instantiate_node(cfg.model)
    assert info.value.key == key, str(info.value)


def test_missing_data_root_fails_naming_data_root(tmp_path: Path) -> None:
    cfg = compose_config(["data=ucf101", f"data.root={tmp_path / 'nowhere'}"], run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        instantiate_node(cfg.data)
    assert info.value.key == "data.root" and "nowhere" in str(info.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = compose_config(["data=ucf101", f"data.root={empty}"], run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        instantiate_node(cfg.data)
    assert info.value.key == "data.root"
