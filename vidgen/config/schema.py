"""Validation of a composed config before anything is built or trained.

Nodes with a fixed shape (optim, ema, samples, diffusion, sampler, conditioner, autoencoder, top-level keys)
have dataclass schemas: OmegaConf checks types and unknown keys, ``__post_init__`` checks ranges. Nodes
built from a ``_target_`` (model, data, trainer, callbacks, logger) are checked against the target's
signature, and their constructors check values (raising :class:`ConfigError` with the key); the values of
``trainer`` (Lightning's) are checked here too (:mod:`vidgen.config.trainer`). Every failure names the dotted
config key.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vidgen.config.errors import ConfigError
from vidgen.config.trainer import check_trainer


class _FieldError(ValueError):
    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message
        super().__init__(f"{name}: {message}")


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise _FieldError(name, message)


def _one_of(value: str, allowed: tuple[str, ...], name: str) -> None:
    _require(value in allowed, name, f"'{value}' is not one of {', '.join(allowed)}")


@dataclass
class OptimSchema:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    # constant | cosine (vidgen/lit/lr_schedule.py); linear warm-up over warmup_steps
    schedule: str = "constant"
    # what the cosine runs over: steps (trainer.max_steps) | time (the fraction of trainer.max_time spent) |
    # auto (time with a trainer.max_time, else steps)
    schedule_over: str = "steps"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    # the fused AdamW kernel (one pass over each parameter) where every parameter is a CPU or CUDA float tensor
    fused: bool = True

    def __post_init__(self) -> None:
        from vidgen.lit.lr_schedule import SCHEDULE_CLOCKS, SCHEDULES

        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(
            self.schedule in SCHEDULES,
            "schedule",
            f"choose one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
        )
        _one_of(self.schedule_over, SCHEDULE_CLOCKS, "schedule_over")
        _require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _require(
            0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", f"must lie in [0, 1], got {self.min_lr_ratio}"
        )
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two values in [0, 1)"
        )
        _require(self.eps > 0, "eps", "must be > 0")


@dataclass
class EmaSchema:
    enabled: bool = True
    decay: float = 0.9999
    warmup: bool = False

    def __post_init__(self) -> None:
        _require(0.0 <= self.decay < 1.0, "decay", f"must lie in [0, 1), got {self.decay}")


@dataclass
class SamplesSchema:
    num_videos: int = 4
    final_num_videos: int = 8
    fps: int = 8

    def __post_init__(self) -> None:
        _require(self.num_videos >= 0, "num_videos", "must be >= 0")
        _require(self.final_num_videos >= 0, "final_num_videos", "must be >= 0")
        _require(self.fps > 0, "fps", "must be > 0")


@dataclass
class DiffusionSchema:
    _target_: str = "vidgen.diffusion.build_diffusion"
    schedule: str = "linear"
    num_timesteps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    prediction: str = "eps"
    learn_sigma: bool = True
    loss: str = "hybrid"
    min_snr_gamma: float | None = None
    timestep_sampling: str = "uniform"

    def __post_init__(self) -> None:
        from vidgen.diffusion.timestep_sampling import TIMESTEP_SAMPLINGS

        _one_of(self.schedule, ("linear", "cosine", "scaled_linear"), "schedule")
        _one_of(self.timestep_sampling, TIMESTEP_SAMPLINGS, "timestep_sampling")
        _require(self.min_snr_gamma is None or self.min_snr_gamma > 0, "min_snr_gamma", "must be > 0 or null")
        _one_of(self.prediction, ("eps", "v", "x0"), "prediction")
        _one_of(self.loss, ("simple", "hybrid"), "loss")
        _require(self.num_timesteps >= 2, "num_timesteps", "must be >= 2")
        _require(self.loss != "hybrid" or self.learn_sigma, "loss", "'hybrid' needs learn_sigma=true")
        _require(
            self.loss != "simple" or not self.learn_sigma,
            "learn_sigma",
            "true with diffusion.loss=simple: the simple loss gives the variance outputs no gradient, so DDPM "
            "would sample with an untrained variance; set diffusion.loss=hybrid or diffusion.learn_sigma=false",
        )


#: ``_target_`` of the continuous-time diffusion (``conf/diffusion/vdm.yaml``), validated by its own schema
VDM_DIFFUSION_TARGET = "vidgen.diffusion.build_vdm_diffusion"


@dataclass
class VDMDiffusionSchema:
    """``diffusion=vdm``: continuous time, cosine log-SNR schedule, MSE on the eps / v / x0 target."""

    _target_: str = VDM_DIFFUSION_TARGET
    schedule: str = "cosine_logsnr"
    logsnr_min: float = -20.0
    logsnr_max: float = 20.0
    prediction: str = "eps"
    learn_sigma: bool = False
    loss: str = "mse"
    timestep_sampling: str = "uniform"

    def __post_init__(self) -> None:
        from vidgen.diffusion.timestep_sampling import TIMESTEP_SAMPLINGS

        _one_of(self.schedule, ("cosine_logsnr",), "schedule")
        _one_of(self.timestep_sampling, TIMESTEP_SAMPLINGS, "timestep_sampling")
        _one_of(self.prediction, ("eps", "v", "x0"), "prediction")
        _one_of(self.loss, ("mse",), "loss")
        _require(
            self.logsnr_min < self.logsnr_max,
            "logsnr_min",
            f"must be < diffusion.logsnr_max, got {self.logsnr_min} and {self.logsnr_max}",
        )
        _require(
            not self.learn_sigma,
            "learn_sigma",
            "must be false for the continuous-time diffusion (it samples with the fixed, gamma-interpolated "
            "variance)",
        )


def diffusion_schema(node: Any) -> type:
    """The schema of a ``diffusion`` node: by its ``_target_``, the discrete chain's or the continuous one's."""
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    return VDMDiffusionSchema if target == VDM_DIFFUSION_TARGET else DiffusionSchema


@dataclass
class SamplerSchema:
    name: str = "ddpm"
    steps: int = 250
    eta: float = 0.0
    order: int = 2
    clip_x0: bool = False
    # vdm_ancestral: log-variance interpolation (0 posterior, 1 forward) and the Langevin corrector
    gamma: float = 0.0
    langevin_steps_per_step: int = 0
    langevin_delta: float = 0.1
    # the denoiser's precision while sampling: 32-true | bf16-mixed (bf16 autocast; vidgen/lit/sampling_precision.py)
    precision: str = "32-true"

    def __post_init__(self) -> None:
        _one_of(self.name, ("ddpm", "ddim", "dpmsolver", "vdm_ancestral"), "name")
        from vidgen.lit.sampling_precision import SAMPLING_PRECISIONS

        _one_of(self.precision, SAMPLING_PRECISIONS, "precision")
        _require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")
        _require(self.eta >= 0, "eta", "must be >= 0")
        _require(self.order in (1, 2), "order", "must be 1 or 2")
        _require(0.0 <= self.gamma <= 1.0, "gamma", f"must lie in [0, 1], got {self.gamma}")
        _require(
            self.langevin_steps_per_step >= 0,
            "langevin_steps_per_step",
            f"must be >= 0, got {self.langevin_steps_per_step}",
        )
        _require(
            self.langevin_steps_per_step == 0 or self.name == "vdm_ancestral",
            "langevin_steps_per_step",
            f"the Langevin corrector belongs to sampler=vdm_ancestral, not '{self.name}'",
        )
        _require(self.langevin_delta > 0, "langevin_delta", f"must be > 0, got {self.langevin_delta}")


@dataclass
class ConditionerSchema:
    _target_: str = "vidgen.conditioning.build_conditioner"
    kind: str = "none"
    num_classes: int = 0
    drop_prob: float = 0.0
    text_dim: int = 0
    path: str | None = None
    model_name: str | None = None
    max_length: int = 77
    # text: the token that fills a caption up to max_length (auto: what the weights' own tokenizer used)
    pad_token: str = "auto"

    def __post_init__(self) -> None:
        _one_of(self.kind, ("none", "class", "text"), "kind")
        _one_of(self.pad_token, ("auto", "eot", "zero"), "pad_token")
        _require(0.0 <= self.drop_prob < 1.0, "drop_prob", f"must lie in [0, 1), got {self.drop_prob}")
        _require(self.kind != "class" or self.num_classes > 0, "num_classes", "class conditioning needs > 0")
        text = self.kind == "text"
        _require(not text or self.num_classes == 0, "num_classes", "text conditioning takes no classes: 0")
        _require(
            text or self.text_dim == 0, "text_dim", f"only kind 'text' has text states; 0 for '{self.kind}'"
        )
        _require(
            not text or self.text_dim > 0, "text_dim", f"text conditioning needs > 0, got {self.text_dim}"
        )
        _require(not text or bool(self.path), "path", "text conditioning needs a local open_clip checkpoint")
        _require(not text or bool(self.model_name), "model_name", "text conditioning needs an architecture")
        _require(self.max_length >= 2, "max_length", f"must be >= 2, got {self.max_length}")


@dataclass
class AutoencoderSchema:
    _target_: str = "vidgen.autoencoders.build_autoencoder"
    kind: str = "identity"
    path: str | None = None
    subfolder: str | None = None
    latent_channels: int = 3
    downsample: int = 1
    scaling_factor: float = 1.0
    sample_posterior: bool = False
    micro_batch: int = 0

    def __post_init__(self) -> None:
        _one_of(self.kind, ("identity", "sd_vae"), "kind")
        _require(self.latent_channels >= 1, "latent_channels", "must be >= 1")
        _require(self.downsample >= 1, "downsample", "must be >= 1")
        _require(self.scaling_factor > 0, "scaling_factor", "must be > 0")
        _require(self.micro_batch >= 0, "micro_batch", "must be >= 0")


@dataclass
class EvaluationSchema:
    at_end: bool = False
    num_real: int | None = None
    num_fake: int | None = None
    batch_size: int = 16
    every_n_steps: int | None = None

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", "must be >= 1")
        _require(
            self.every_n_steps is None or self.every_n_steps >= 1,
            "every_n_steps",
            f"must be >= 1 (or null: off), got {self.every_n_steps}",
        )
        for name in ("num_real", "num_fake"):
            value = getattr(self, name)
            _require(
                value is None or value >= 2, name, f"must be >= 2 (covariances need two clips), got {value}"
            )


@dataclass
class CompileSchema:
    enabled: bool = False
    mode: str | None = None

    def __post_init__(self) -> None:
        modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
        _require(self.mode in modes, "mode", f"must be one of {modes}, got {self.mode!r}")


@dataclass
class PretrainedSchema:
    """``pretrained``: initialise the denoiser from a pretrained image model on a fresh start."""

    path: str | None = None
    kind: str = "dit"

    def __post_init__(self) -> None:
        _one_of(self.kind, ("dit",), "kind")


@dataclass
class TopLevelSchema:
    task_name: str = "train"
    seed: int = 0
    ckpt_path: str | None = None
    guidance_scale: float = 1.0
    optimized_metric: str | None = None

    def __post_init__(self) -> None:
        _require(self.guidance_scale >= 0, "guidance_scale", f"must be >= 0, got {self.guidance_scale}")


NODE_SCHEMAS: dict[str, type] = {
    "optim": OptimSchema,
    "ema": EmaSchema,
    "samples": SamplesSchema,
    "diffusion": DiffusionSchema,
    "sampler": SamplerSchema,
    "conditioner": ConditionerSchema,
    "autoencoder": AutoencoderSchema,
    "evaluation": EvaluationSchema,
    "compile": CompileSchema,
    "pretrained": PretrainedSchema,
}
TARGET_NODES = ("model", "data", "trainer", "logger")


def validate_node(node: Any, schema: type, key: str) -> None:
    """Check one node against a dataclass schema; raise ConfigError naming `key.<field>`."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
        OmegaConf.to_object(merged)
    except _FieldError as error:
        raise ConfigError(f"{key}.{error.name}" if key else error.name, error.message) from None
    except OmegaConfBaseException as error:
        sub = getattr(error, "full_key", "") or ""
        message = str(error).splitlines()[0]
        raise ConfigError(f"{key}.{sub}".strip(".") if key else sub, message) from None


def _import_target(path: str, key: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"{key}._target_", f"cannot import '{path}': {error}") from None
    return target


def check_target_kwargs(node: DictConfig, key: str) -> None:
    """Every key of a ``_target_`` node must be an argument of the target (unless it takes ``**kwargs``)."""
    if node is None or "_target_" not in node:
        return
    target = _import_target(str(node._target_), key)
    parameters = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    for name in node:
        if str(name).startswith("_"):
            continue
        if name not in parameters:
            allowed = ", ".join(p for p in parameters if p != "self")
            raise ConfigError(f"{key}.{name}", f"unknown key for {node._target_}; allowed: {allowed}")


def resolve_config(cfg: DictConfig) -> DictConfig:
    """A fully resolved copy of ``cfg``; a failing interpolation is reported with its key."""
    try:
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", "") or "config"
        raise ConfigError(key, str(error).splitlines()[0]) from None


#: ``scale.family`` of a scale file that does not set one (conf/scale/tiny.yaml and paper.yaml: Latte's)
DEFAULT_SCALE_FAMILY = "latte"
#: the scale files of each experiment family, for the error messages
SCALE_CHOICES = {
    "latte": "scale=tiny, scale=small or scale=paper",
    "latent_shift": "scale=latent_shift/tiny, scale=latent_shift/small or scale=latent_shift/paper",
    "vdm": "scale=vdm/tiny or scale=vdm/paper",
    "cmd": "scale=cmd/tiny",
    "compare": "scale=compare/tiny, scale=compare/paper or scale=compare/paper_webvid",
}
#: the denoiser class (``model._target_``'s last name) a scale of each family other than Latte's is made for
SCALE_MODELS = {"latent_shift": "LatentUNet", "vdm": "VDMUNet3D"}


def check_experiment_scale(cfg: DictConfig) -> None:
    """An ablation experiment must run at a scale of its own family; a scale's prerequisite files must exist.

    ``experiment_family`` (set by an experiment, e.g. ``conf/experiment/latent_shift/*.yaml``) must equal the
    chosen scale's ``scale.family`` (a scale without one is Latte's, :data:`DEFAULT_SCALE_FAMILY`); and a
    scale of a family other than Latte's, chosen without such an experiment, must come with a model of that
    family (:data:`SCALE_MODELS`; a Latte model with a Latent-Shift scale fails: the Latte experiments carry no
    marker). Each entry
    ``{key, make}`` of ``scale.prerequisites`` names a config key whose value is a file that the command
    ``make`` writes. Every failure is a :class:`ConfigError` naming ``scale`` (or the prerequisite's key).
    Runs on the unresolved config, before anything else is checked.
    """
    if "scale" not in list(cfg.keys()):  # (`in cfg` is False for a missing value: `scale: ???`)
        return
    experiment = OmegaConf.select(cfg, "experiment_family", default=None)
    if OmegaConf.is_missing(cfg, "scale"):
        choices = SCALE_CHOICES.get(str(experiment)) or " | ".join(SCALE_CHOICES.values())
        raise ConfigError("scale", f"is required by this experiment: {choices}")
    scale = cfg.scale
    if not isinstance(scale, DictConfig):
        return
    family = str(OmegaConf.select(scale, "family", default=None) or DEFAULT_SCALE_FAMILY)
    name = OmegaConf.select(scale, "name", default="?", throw_on_missing=False)
    if experiment is not None and str(experiment) != family:
        raise ConfigError(
            "scale",
            f"a {experiment} experiment needs a {experiment} scale ({SCALE_CHOICES.get(str(experiment), '?')}); "
            f"the chosen scale '{name}' is a {family} scale",
        )
    if experiment is None and family in SCALE_MODELS:
        target = str(OmegaConf.select(cfg, "model._target_", default="") or "")
        if target.rsplit(".", 1)[-1] != SCALE_MODELS[family]:
            raise ConfigError(
                "scale",
                f"the {family} scale '{name}' is for the {SCALE_MODELS[family]} models "
                f"(experiment={family}/...); this run's model is {target.rsplit('.', 1)[-1] or 'unset'}: use "
                f"{SCALE_CHOICES['latte']}",
            )
    for item in OmegaConf.select(scale, "prerequisites", default=None) or []:
        key, command = str(item.key), str(item.make)
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            raise ConfigError(key, f"is not set (scale.prerequisites names it; {command} makes the file)")
        if not Path(str(value)).expanduser().is_file():
            raise ConfigError(key, f"file '{value}' does not exist; make it first with: {command}")


def validate_config(cfg: DictConfig) -> None:
    """Check a composed config; raise :class:`ConfigError` naming the first bad key."""
    check_experiment_scale(cfg)
    cfg = resolve_config(cfg)
    top = {
        k: cfg[k]
        for k in ("task_name", "seed", "ckpt_path", "guidance_scale", "optimized_metric")
        if k in cfg
    }
    validate_node(OmegaConf.create(top), TopLevelSchema, "")
    for key, schema in NODE_SCHEMAS.items():
        if key in cfg:
            validate_node(cfg[key], diffusion_schema(cfg[key]) if key == "diffusion" else schema, key)
    for key in TARGET_NODES:
        if key in cfg:
            check_target_kwargs(cfg[key], key)
    if "trainer" in cfg:
        check_trainer(cfg.trainer)
    strategy = cfg.trainer.get("strategy") if "trainer" in cfg else None
    if isinstance(strategy, DictConfig):
        check_target_kwargs(strategy, "trainer.strategy")
    for name, callback in (cfg.get("callbacks") or {}).items():
        check_target_kwargs(callback, f"callbacks.{name}")
    for name, metric in (cfg.get("metrics") or {}).items():
        check_target_kwargs(metric, f"metrics.{name}")
    _check_cross_keys(cfg)


def check_sampler_for_diffusion(sampler: Any, diffusion: Any) -> None:
    """DPM-Solver++ walks a discrete chain: with the continuous-time diffusion it is refused, naming
    ``sampler.name``."""
    name = OmegaConf.select(sampler, "name", default=None) if isinstance(sampler, DictConfig) else None
    if name == "dpmsolver" and diffusion_schema(diffusion) is VDMDiffusionSchema:
        raise ConfigError(
            "sampler.name",
            "dpmsolver runs on a discrete chain; with diffusion=vdm use sampler=vdm_ancestral, ddim or ddpm",
        )


#: ``cmd.loss`` values (stage 1 of CMD)
CMD_AUTOENCODER_LOSSES = ("l2", "l1", "l1_lpips")
#: ``cmd.autoencoder_ckpt`` value for a randomly initialised autoencoder (benchmarks; refused for training)
CMD_UNTRAINED_AUTOENCODER = "untrained"


def check_cmd(cfg: DictConfig) -> None:
    """The ``cmd`` node: its loss; with ``model=cmd`` (stage 2) a stage-1 checkpoint that exists (the
    ``untrained`` placeholder only outside training) and no appended joint-training images."""
    node = cfg.get("cmd")
    if node is None:
        return
    loss = str(node.get("loss", "l2"))
    if loss not in CMD_AUTOENCODER_LOSSES:
        raise ConfigError("cmd.loss", f"'{loss}' is not one of {', '.join(CMD_AUTOENCODER_LOSSES)}")
    target = str(OmegaConf.select(cfg, "model._target_", default="") or "").rsplit(".", 1)[-1]
    if target not in ("CMDDenoisers", "CMDAutoencoder"):
        return
    if int(OmegaConf.select(cfg, "data.joint_image_frames", default=0) or 0) > 0:
        raise ConfigError("data.joint_image_frames", "CMD trains on whole clips only: set it to 0")
    if target == "CMDAutoencoder" and OmegaConf.select(cfg, "evaluation.every_n_steps", default=None):
        raise ConfigError(
            "evaluation.every_n_steps",
            "the CMD autoencoder (stage 1) generates nothing to evaluate during training: its reconstructions "
            "are scored at the end (evaluation.at_end=true) and val/psnr is logged at every validation",
        )
    if target == "CMDAutoencoder" and loss == "l1_lpips":
        if str(OmegaConf.select(cfg, "autoencoder.kind", default="")) != "identity":
            raise ConfigError(
                "cmd.loss", "l1_lpips is the release's pixel-space loss: use autoencoder=identity"
            )
        weights = node.get("lpips_vgg_weights")
        if weights is None or not Path(str(weights)).is_file():
            raise ConfigError(
                "cmd.lpips_vgg_weights",
                f"'{weights}' is not a file; cmd.loss=l1_lpips needs VGG16's ImageNet weights as a local file "
                "(torchvision's vgg16-397923af.pth)",
            )
    if target != "CMDDenoisers":
        return
    path = node.get("autoencoder_ckpt")
    how = "train one with model=cmd_ae, then pass cmd.autoencoder_ckpt=<run dir>/checkpoints/last.ckpt"
    if path is None:
        raise ConfigError(
            "cmd.autoencoder_ckpt", f"model=cmd learns the latents of a stage-1 autoencoder: {how}"
        )
    if str(path) == CMD_UNTRAINED_AUTOENCODER:
        if str(cfg.get("task_name", "")) == "train":
            raise ConfigError(
                "cmd.autoencoder_ckpt",
                f"'untrained' is for benchmarks and shape checks; training needs a trained autoencoder: {how}",
            )
        return
    if not Path(str(path)).exists():
        raise ConfigError("cmd.autoencoder_ckpt", f"'{path}' does not exist; {how}")


def _check_cross_keys(cfg: DictConfig) -> None:
    """Relations between nodes that no single schema sees."""
    check_cmd(cfg)
    optim, trainer = cfg.get("optim"), cfg.get("trainer")
    over_time = (
        optim is not None and optim.get("schedule_over") == "time" and optim.get("schedule") == "cosine"
    )
    if over_time and (trainer is None or trainer.get("max_time") is None):
        raise ConfigError(
            "optim.schedule_over", "time needs a wall-clock budget: set trainer.max_time (or use steps)"
        )
    if "sampler" in cfg and "diffusion" in cfg:
        check_sampler_for_diffusion(cfg.sampler, cfg.diffusion)
    guidance = float(cfg.get("guidance_scale", 1.0))
    conditioner = cfg.get("conditioner")
    if guidance != 1.0 and conditioner is not None and float(conditioner.drop_prob) <= 0:
        raise ConfigError(
            "guidance_scale",
            f"{guidance} needs a conditional model trained with condition dropout (conditioner.drop_prob > 0)",
        )
