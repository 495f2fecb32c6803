"""``python -m vidgen.sample ckpt_path=... num_videos=8 sampler=ddim sampler.steps=50 guidance_scale=...``

Writes one file per sample and a grid into the Hydra run directory (or ``out_dir``): ``sample_000.mp4``, ...,
``grid.mp4``, or ``sample_000.png``, ..., ``grid.png`` when the samples have one frame. The model,
autoencoder and conditioner are rebuilt from the checkpoint's stored config, with two kinds of changes:

- ``data.num_frames=N``: sample clips of ``N`` frames, another length than the model was trained on (the
  Latent-Shift family and Latte with per-frame patches take any; a model that cannot, e.g. Latte's tube
  embedding given a length that is not a multiple of its stride, stops with a ConfigError naming
  ``data.num_frames`` before sampling).
  ``data.num_frames=1`` makes images: Latent-Shift's text-to-image from the video model, with the shift in
  place: both shifted parts are zeros, the padding the model saw at the first and last frames of its
  training clips (the paper shows that this works, and that removing the shift does not).
- ``config_overrides``: any dotlist of the stored config, e.g. the "T2I without the shift" ablation on the
  same weights (Latent-Shift and the per-frame U-Net have identical state-dict keys)::

    python -m vidgen.sample ckpt_path=RUN/checkpoints/last.ckpt data.num_frames=1 'captions=["a red square"]'
    # the same images without the shift: add
    'config_overrides=["model.temporal=none"]'

  (the inner quotes are needed: Hydra reads ``=`` inside a list only in a quoted string).

Conditional generation from the same unconditional (or class / text) model, by reconstruction guidance or
replacement (VDM §3.1; :mod:`vidgen.lit.conditional_sampling`), with ``sampler=vdm_ancestral`` (or ``ddim``,
``ddpm``): one task at a time.

- ``extend.num_frames=64``: videos longer than the model's clip, block by block (``extend.method``,
  ``extend.weight``, ``extend.context_frames``).
- ``condition_video=in.mp4 condition.frames=[0,1]`` (prediction) or ``condition.stride=4`` (interpolation):
  the given clip positions are filled, in order, by the video's frames 0, 1, ...; the rest is generated.
- ``superres.video=small.mp4``: clips at the model's resolution whose downsampled version is the given one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.schema import SamplerSchema, check_sampler_for_diffusion, validate_node
from vidgen.diffusion import GuidanceError
from vidgen.io.conditions import write_conditions
from vidgen.io.samples import write_samples
from vidgen.io.video import auto_scale
from vidgen.lit.build import load_module_from_checkpoint
from vidgen.lit.conditional_sampling import check_request, read_request, run_request
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.sampling import check_frame_count
from vidgen.runtime import CONFIG_DIR, pick_device


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


@hydra.main(config_path=CONFIG_DIR, config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry: sample (exit 2 on a config error)."""
    try:
        sample(cfg)
    except (ConfigError, ValueError, GuidanceError) as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
