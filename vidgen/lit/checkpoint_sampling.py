"""Sampling a trained checkpoint into files, as ``python -m vidgen.sample`` does (its module docstring gives
the settings): rebuild the module from the checkpoint's stored config with the allowed changes, generate
(unconditionally, or for one conditional-generation request), write one file per sample, a grid and
``conditions.json``."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from vidgen.config.errors import ConfigError
from vidgen.config.schema import SamplerSchema, check_sampler_for_diffusion, validate_node
from vidgen.io.conditions import write_conditions
from vidgen.io.samples import write_samples
from vidgen.io.video import auto_scale
from vidgen.lit.build import load_module_from_checkpoint
from vidgen.lit.conditional_sampling import check_request, read_request, run_request
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.sampling import check_frame_count
from vidgen.runtime import pick_device


def checkpoint_overrides(cfg: DictConfig) -> list[str]:
    """The dotlist applied to the checkpoint's stored config: ``config_overrides``, then ``data.num_frames``
    when it is set (not null)."""
    overrides = [str(item) for item in cfg.config_overrides]
    num_frames = OmegaConf.select(cfg, "data.num_frames")
    if num_frames is not None:
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError(
                "data.num_frames", f"must be an integer >= 1 (or null: the checkpoint's), got {num_frames!r}"
            )
        overrides.append(f"data.num_frames={num_frames}")
    return overrides


def load_for_sampling(cfg: DictConfig) -> tuple[VideoDiffusionModule, DictConfig]:
    """Rebuild the checkpoint's module with :func:`checkpoint_overrides` applied and load its weights.

    Raises:
        ConfigError: ``config_overrides`` when the overridden model has other weights than the checkpoint
            (e.g. ``model.temporal=none`` on a Latent-VDM checkpoint, whose temporal layers have no place).
    """
    overrides = checkpoint_overrides(cfg)
    try:
        module, stored = load_module_from_checkpoint(cfg.ckpt_path, overrides)
        if getattr(module, "is_reconstruction_model", False):
            raise ConfigError(
                "ckpt_path",
                f"'{cfg.ckpt_path}' is a CMD autoencoder (stage 1): it reconstructs videos, it does not "
                "generate them. Train stage 2 on it (model=cmd cmd.autoencoder_ckpt=<this file>) and sample "
                "from that checkpoint",
            )
        return module, stored
    except RuntimeError as error:  # load_state_dict(strict=True): missing / unexpected keys, other shapes
        if not overrides:
            raise
        raise ConfigError(
            "config_overrides",
            f"the checkpoint's weights do not fit the model built with {overrides}: {error}",
        ) from error


def sampling_condition(
    module: VideoDiffusionModule, cfg: DictConfig
) -> tuple[torch.Tensor | None, list[str] | None]:
    """``(labels (N,) | None, captions (N) | None)`` for ``cfg.num_videos`` samples: the given ones cycled,
    the classes in turn for a class-conditional model; a text-conditional model needs ``captions``."""
    count = int(cfg.num_videos)
    labels = torch.tensor(list(cfg.labels)) if cfg.get("labels") is not None else None
    num_classes = module.conditioner.num_classes
    if num_classes and labels is None:
        labels = torch.arange(count) % num_classes
    captions = None
    if cfg.get("captions"):
        given = [str(c) for c in cfg.captions]
        captions = [given[i % len(given)] for i in range(count)]
    elif getattr(module.conditioner, "text_dim", 0):
        raise ConfigError("captions", 'this model is text-conditional: give captions=["a ...", ...]')
    return labels, captions


def sample(cfg: DictConfig) -> list[Path]:
    """Generate ``num_videos`` samples from ``ckpt_path``; return the written files (grid last)."""
    if int(cfg.num_videos) < 1:
        raise ConfigError("num_videos", f"must be >= 1, got {cfg.num_videos}")
    request = read_request(cfg)  # extend / condition_video / superres, checked before the model loads
    module, train_cfg = load_for_sampling(cfg)
    sampler_node = cfg.sampler if cfg.get("sampler") else train_cfg.sampler
    sampler_cfg = OmegaConf.to_container(sampler_node, resolve=True)
    validate_node(OmegaConf.create(sampler_cfg), SamplerSchema, "sampler")
    check_sampler_for_diffusion(OmegaConf.create(sampler_cfg), train_cfg.diffusion)
    if request is not None:
        check_request(request, module, sampler_cfg)
    if not cfg.use_ema:
        module.ema_denoiser = None
    module.to(pick_device(str(cfg.device)))
    labels, captions = sampling_condition(module, cfg)
    if OmegaConf.select(cfg, "data.num_frames") is not None:
        check_frame_count(module, labels, captions)
    scale = cfg.guidance_scale if cfg.guidance_scale is not None else train_cfg.guidance_scale

    start = time.perf_counter()
    sampling = {
        "generator": torch.Generator().manual_seed(int(cfg.seed)),
        "labels": labels,
        "captions": captions,
        "guidance_scale": float(scale),
        "batch_size": cfg.batch_size,
        "progress": True,
    }
    if request is None:
        videos = module.generate(int(cfg.num_videos), sampler=sampler_cfg, **sampling)
    else:
        nan_to_num = bool(OmegaConf.select(cfg, "guidance_nan_to_num", default=False))
        videos = run_request(
            request, module, int(cfg.num_videos), sampler_cfg=sampler_cfg, nan_to_num=nan_to_num, **sampling
        )
    seconds = time.perf_counter() - start

    out_dir = Path(cfg.out_dir)
    scale_px = int(cfg.upscale) if cfg.get("upscale") else auto_scale(videos.shape[-2], videos.shape[-1])
    written = write_samples(out_dir, videos, fps=int(cfg.fps), scale=scale_px)
    # what each file was generated for (vidgen.evaluate reads it)
    write_conditions(out_dir, written, None if labels is None else labels.tolist(), captions)
    kind = "images" if videos.shape[2] == 1 else f"videos of {videos.shape[2]} frames"
    task = "" if request is None else f", {type(request).__name__.removesuffix('Request').lower()}"
    print(
        f"Wrote {len(videos)} {kind} + {written[-1].name} to {out_dir} ({sampler_cfg['name']}, "
        f"{sampler_cfg['steps']} steps, guidance {scale}{task}, {seconds / len(videos):.2f} s/sample)"
    )
    return written
