"""Build a :class:`VideoDiffusionModule` from a composed config, or load one from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.lit.module import VideoDiffusionModule, restore_frozen_weights


def video_shape_from_config(cfg: DictConfig) -> tuple[int, int, int, int]:
    """``(C, F, H, W)`` of the videos the config's data produces."""
    data = cfg.data
    return (int(data.channels), int(data.num_frames), int(data.resolution), int(data.resolution))


def build_module(
    cfg: DictConfig, samples_dir: str | Path | None = None, config: dict[str, Any] | None = None
) -> VideoDiffusionModule:
    """Instantiate autoencoder, conditioner, denoiser and diffusion from ``cfg`` and wrap them."""
    autoencoder = instantiate(cfg.autoencoder)
    conditioner = instantiate(cfg.conditioner)
    denoiser = instantiate(cfg.model)
    diffusion = instantiate(cfg.diffusion)
    return VideoDiffusionModule(
        denoiser=denoiser,
        autoencoder=autoencoder,
        conditioner=conditioner,
        diffusion=diffusion,
        video_shape=video_shape_from_config(cfg),
        sampler=OmegaConf.to_container(cfg.sampler, resolve=True),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        ema=OmegaConf.to_container(cfg.ema, resolve=True),
        samples=OmegaConf.to_container(cfg.samples, resolve=True),
        guidance_scale=float(cfg.guidance_scale),
        seed=int(cfg.seed),
        samples_dir=samples_dir,
        config=config,
    )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a vidgen checkpoint safely (``weights_only=True``), failing clearly on a missing/foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "vidgen_config" not in checkpoint or checkpoint["vidgen_config"] is None:
        raise ConfigError("ckpt_path", f"'{path}' is not a vidgen training checkpoint (no stored config)")
    return checkpoint


def load_module_from_checkpoint(
    path: str | Path, overrides: list[str] | None = None
) -> tuple[VideoDiffusionModule, DictConfig]:
    """Rebuild the module a checkpoint was trained with and load its weights (EMA included).

    Args:
        path: a ``.ckpt`` written by ``vidgen.train``.
        overrides: dotlist overrides of the stored config (e.g. ``["autoencoder.path=/new/place"]``).
    """
    checkpoint = read_checkpoint(path)
    cfg = OmegaConf.create(checkpoint["vidgen_config"])
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    module = build_module(cfg, config=OmegaConf.to_container(cfg, resolve=True))
    state = dict(checkpoint["state_dict"])
    restore_frozen_weights(module, state)
    module.load_state_dict(state, strict=True)
    return module.eval(), cfg
