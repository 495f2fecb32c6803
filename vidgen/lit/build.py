"""Build a :class:`VideoDiffusionModule` from a composed config, or load one from a checkpoint."""

from __future__ import annotations

import warnings
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
        compile=OmegaConf.to_container(cfg.compile, resolve=True) if "compile" in cfg else None,
    )


# the file Lightning's model-parallel strategy writes next to the shards of a distributed checkpoint
SHARDED_METADATA_FILE = "meta.pt"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a vidgen checkpoint safely (``weights_only=True``), failing clearly on a missing/foreign file.

    ``path`` is a ``.ckpt`` file, or the folder of a sharded checkpoint written under FSDP (one
    ``__<rank>_0.distcp`` shard per rank and ``meta.pt``): its model weights are consolidated in this
    process, without a process group (the optimizer state is not read).
    """
    path = Path(path)
    if path.is_dir():
        checkpoint = _read_sharded_checkpoint(path)
    elif path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    if "vidgen_config" not in checkpoint or checkpoint["vidgen_config"] is None:
        raise ConfigError("ckpt_path", f"'{path}' is not a vidgen training checkpoint (no stored config)")
    return checkpoint


def _read_sharded_checkpoint(folder: Path) -> dict[str, Any]:
    """Metadata + full model ``state_dict`` of a distributed (DCP) checkpoint folder, in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta_file = folder / SHARDED_METADATA_FILE
    if not meta_file.is_file():
        raise ConfigError(
            "ckpt_path", f"'{folder}' is a folder but not a sharded checkpoint (no {SHARDED_METADATA_FILE})"
        )
    checkpoint = torch.load(meta_file, map_location="cpu", weights_only=True)
    reader = dcp.FileSystemReader(str(folder))
    prefix = "state_dict."
    state: dict[str, torch.Tensor] = {}
    for key, item in reader.read_metadata().state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            state[key[len(prefix) :]] = torch.empty(item.size, dtype=item.properties.dtype)
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load({"state_dict": state}, storage_reader=reader, no_dist=True)
    checkpoint["state_dict"] = state
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
