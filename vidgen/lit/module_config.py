"""What every video diffusion module takes from a composed config besides its denoiser (shared by
:mod:`vidgen.lit.build` and :mod:`vidgen.lit.cmd_build`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vidgen.config.checks import checked_frame_size
from vidgen.config.instantiate import instantiate_node as instantiate


def video_shape_from_config(cfg: DictConfig) -> tuple[int, int, int, int]:
    """``(C, F, H, W)`` of the videos the config's data produces (``data.resolution``: one side or ``[H, W]``)."""
    data = cfg.data
    height, width = checked_frame_size("data.resolution", data.resolution)
    return (int(data.channels), int(data.num_frames), height, width)


def diffusion_module_kwargs(
    cfg: DictConfig, samples_dir: str | Path | None, config: dict[str, Any] | None
) -> dict[str, Any]:
    """The :class:`~vidgen.lit.module.VideoDiffusionModule` arguments other than ``denoiser``: the frozen
    autoencoder, conditioner and diffusion instantiated, the plain settings as containers."""
    return {
        "autoencoder": instantiate(cfg.autoencoder),
        "conditioner": instantiate(cfg.conditioner),
        "diffusion": instantiate(cfg.diffusion),
        "video_shape": video_shape_from_config(cfg),
        "sampler": OmegaConf.to_container(cfg.sampler, resolve=True),
        "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "ema": OmegaConf.to_container(cfg.ema, resolve=True),
        "samples": OmegaConf.to_container(cfg.samples, resolve=True),
        "guidance_scale": float(cfg.guidance_scale),
        "seed": int(cfg.seed),
        "samples_dir": samples_dir,
        "config": config,
        "compile": OmegaConf.to_container(cfg.compile, resolve=True) if "compile" in cfg else None,
    }
