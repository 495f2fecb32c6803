"""Build CMD's two Lightning modules from a composed config: stage 1 (``model=cmd_ae``, the autoencoder)
and stage 2 (``model=cmd``, the content and motion diffusion models on a frozen stage-1 autoencoder)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from vidgen.config.checks import checked_frame_size
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node as instantiate
from vidgen.config.schema import CMD_UNTRAINED_AUTOENCODER
from vidgen.lit.checkpoints import read_checkpoint
from vidgen.lit.cmd_autoencoder_module import CMDAutoencoderModule
from vidgen.lit.cmd_module import CMDDiffusionModule
from vidgen.lit.module_config import diffusion_module_kwargs, video_shape_from_config
from vidgen.models.cmd.denoisers import CMDDenoisers

#: the frame-autoencoder keys a stage-2 run must share with its stage-1 autoencoder
_FRAME_AUTOENCODER_KEYS = ("kind", "latent_channels", "downsample", "scaling_factor")
_DATA_KEYS = ("channels", "num_frames", "resolution")


def build_cmd_autoencoder_module(
    cfg: DictConfig, samples_dir: str | Path | None = None, config: dict[str, Any] | None = None
) -> CMDAutoencoderModule:
    """Stage 1: the CMD autoencoder network (``model``) on the frozen frame autoencoder."""
    lpips = None
    if str(cfg.cmd.loss) == "l1_lpips":
        from vidgen.metrics.lpips import build_lpips_vgg

        lpips = build_lpips_vgg(cfg.cmd.lpips_vgg_weights)
    return CMDAutoencoderModule(
        network=instantiate(cfg.model),
        frame_autoencoder=instantiate(cfg.autoencoder),
        video_shape=video_shape_from_config(cfg),
        loss=str(cfg.cmd.loss),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        samples=OmegaConf.to_container(cfg.samples, resolve=True),
        samples_dir=samples_dir,
        config=config,
        lpips=lpips,
        seed=int(cfg.seed),
    )


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state (names, shapes, bytes), the first 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _frame_size_or_none(value: Any) -> tuple[int, int] | Any:
    """``(H, W)`` of a ``data.resolution`` value, the value itself when it is not one (compared as is)."""
    try:
        return checked_frame_size("data.resolution", value)
    except ConfigError:
        return value


def load_cmd_autoencoder(path: str | Path, cfg: DictConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The frozen stage-1 network of ``cmd.autoencoder_ckpt`` and its fingerprint, checked against ``cfg``.

    Raises:
        ConfigError: naming ``cmd.autoencoder_ckpt`` when the file is missing, is not a CMD autoencoder
            checkpoint, or was trained on other data / another frame autoencoder than ``cfg``'s (the key
            that differs is named).
    """
    key = "cmd.autoencoder_ckpt"
    try:
        checkpoint = read_checkpoint(path)
    except ConfigError as error:
        raise ConfigError(key, str(error).split(": ", 1)[-1]) from None
    stored = OmegaConf.create(checkpoint["vidgen_config"])
    target = str(OmegaConf.select(stored, "model._target_", default=""))
    if not target.endswith("CMDAutoencoder"):
        raise ConfigError(
            key,
            f"'{path}' is a checkpoint of {target.rsplit('.', 1)[-1] or 'no model'}, not of a "
            "CMD autoencoder (train one with model=cmd_ae)",
        )
    for node, names in (("autoencoder", _FRAME_AUTOENCODER_KEYS), ("data", _DATA_KEYS)):
        for name in names:
            mine = OmegaConf.select(cfg, f"{node}.{name}", default=None)
            theirs = OmegaConf.select(stored, f"{node}.{name}", default=None)
            if name == "resolution":  # 64 and [64, 64] are the same frame size
                mine, theirs = (_frame_size_or_none(value) for value in (mine, theirs))
            if mine != theirs:
                raise ConfigError(
                    key,
                    f"'{path}' was trained with {node}.{name}={theirs}, this run has {node}.{name}={mine}: "
                    f"stage 2 must use the data shape and frame autoencoder of its autoencoder",
                )
    network = instantiate(stored.model)
    prefix = "network."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ConfigError(key, f"'{path}' does not fit the CMD autoencoder it describes: {error}") from None
    network.requires_grad_(False).eval()
    fingerprint = {**network.arch_config(), "weights": weights_digest(network)}
    return network, fingerprint


def untrained_cmd_autoencoder(cfg: DictConfig) -> tuple[nn.Module, dict[str, Any]]:
    """A randomly initialised autoencoder of size ``cmd.untrained_size`` for this run's data and frame
    autoencoder (benchmarks, shape checks)."""
    from vidgen.models.cmd.autoencoder import CMDAutoencoder

    downsample = int(cfg.autoencoder.downsample)
    torch.manual_seed(int(cfg.seed))
    network = CMDAutoencoder(
        size=str(cfg.cmd.untrained_size),
        in_channels=int(cfg.autoencoder.latent_channels),
        input_size=[
            side // downsample for side in checked_frame_size("data.resolution", cfg.data.resolution)
        ],
        num_frames=int(cfg.data.num_frames),
        position="none" if bool(cfg.cmd.compat_release) else "rope",
        output="bounded" if str(cfg.autoencoder.kind) == "identity" else "linear",
    )
    network.requires_grad_(False).eval()
    return network, {
        **network.arch_config(),
        "weights": f"{CMD_UNTRAINED_AUTOENCODER} (seed {int(cfg.seed)})",
    }


def build_cmd_module(
    cfg: DictConfig, samples_dir: str | Path | None = None, config: dict[str, Any] | None = None
) -> CMDDiffusionModule:
    """Stage 2: load the frozen autoencoder, size the motion model from it, build both denoisers."""
    path = cfg.cmd.autoencoder_ckpt
    if path is None:
        raise ConfigError(
            "cmd.autoencoder_ckpt",
            "model=cmd trains on the latents of a stage-1 autoencoder: train one with model=cmd_ae, then "
            "pass cmd.autoencoder_ckpt=<run dir>/checkpoints/last.ckpt",
        )
    if str(path) == CMD_UNTRAINED_AUTOENCODER:
        network, fingerprint = untrained_cmd_autoencoder(cfg)
    else:
        network, fingerprint = load_cmd_autoencoder(path, cfg)
    _, frames, _, _ = video_shape_from_config(cfg)
    content_channels, content_h, content_w = network.content_shape
    motion_channels, _, _ = network.motion_shape(frames)
    latent_h, latent_w = network.latent_size
    content = instantiate(cfg.model.content)
    motion = instantiate(
        cfg.model.motion,
        motion_channels=motion_channels,
        num_frames=frames,
        latent_h=latent_h,
        latent_w=latent_w,
        content_channels=content_channels,
        content_size=[content_h, content_w],
    )
    denoisers = CMDDenoisers(content=content, motion=motion)
    return CMDDiffusionModule(
        denoiser=denoisers,
        **diffusion_module_kwargs(cfg, samples_dir, config),
        cmd_autoencoder=network,
        cmd_autoencoder_fingerprint=fingerprint,
    )
