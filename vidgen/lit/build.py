"""Build a :class:`VideoDiffusionModule` from a composed config, or load one from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.lit.checkpoints import read_checkpoint
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.module_config import diffusion_module_kwargs, video_shape_from_config

__all__ = [
    "build_module",
    "load_module_from_checkpoint",
    "read_checkpoint",
    "unsharded_copy",
    "video_shape_from_config",
]


def build_module(
    cfg: DictConfig, samples_dir: str | Path | None = None, config: dict[str, Any] | None = None
) -> VideoDiffusionModule:
    """Instantiate autoencoder, conditioner, denoiser and diffusion from ``cfg`` and wrap them.

    CMD's two stages get their own modules (:mod:`vidgen.lit.cmd_build`): ``model=cmd_ae`` the autoencoder's
    (:class:`~vidgen.lit.cmd_autoencoder_module.CMDAutoencoderModule`, not a diffusion module), ``model=cmd``
    the diffusion module of the two CMD denoisers on the frozen autoencoder.
    """
    model = str(cfg.model._target_).rsplit(".", 1)[-1]
    if model in ("CMDAutoencoder", "CMDDenoisers"):
        from vidgen.lit.cmd_build import build_cmd_autoencoder_module, build_cmd_module

        build = build_cmd_autoencoder_module if model == "CMDAutoencoder" else build_cmd_module
        return build(cfg, samples_dir=samples_dir, config=config)
    kwargs = diffusion_module_kwargs(
        cfg, samples_dir, config
    )  # no random draws: the denoiser's init is unchanged
    return VideoDiffusionModule(denoiser=instantiate(cfg.model), **kwargs)


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
    module.on_load_checkpoint({**checkpoint, "state_dict": state})  # frozen weights back; the module's checks
    module.load_state_dict(state, strict=True)
    return module.eval(), cfg


def unsharded_copy(
    module: VideoDiffusionModule, cfg: DictConfig, samples_dir: str | Path | None, config: dict[str, Any]
) -> VideoDiffusionModule | None:
    """On rank 0: a fresh single-process module (built from ``cfg``) holding the gathered weights of a
    sharded (FSDP) one; None on the other ranks. A collective: every rank must call it."""
    from vidgen.lit.parallel import full_state_dict

    state = full_state_dict(module)
    if module.global_rank != 0:
        return None
    plain = build_module(cfg, samples_dir=samples_dir, config=config)
    plain.load_state_dict(state, strict=True)
    return plain
