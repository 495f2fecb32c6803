"""Read a local Stable Diffusion 1.x checkpoint: its U-Net (diffusers ``UNet2DConditionModel``) and the layout
of a Stable Diffusion folder. Nothing is downloaded; every missing file is named in a :class:`ConfigError`.

Layouts :func:`load_unet` accepts:

* a Stable Diffusion pipeline folder, as diffusers' ``save_pretrained`` writes it (``model_index.json``,
  ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``): the U-Net is read from ``unet/``;
* a diffusers U-Net folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or ``.bin``; also the
  ``.fp16`` variants and sharded ``*.index.json`` weights);
* a single file holding a diffusers-layout U-Net state dict (``.safetensors``, ``.bin``, ``.pt``, ``.pth``):
  its ``config.json`` must lie next to it (``<file's folder>/config.json``) or in
  ``<file's folder>/unet/config.json``;
* an original CompVis / LDM single-file Stable Diffusion checkpoint (U-Net keys ``model.diffusion_model.*``;
  a ``.ckpt`` with a ``"state_dict"`` entry or a flat ``.safetensors``), converted with diffusers' own
  ``convert_ldm_unet_checkpoint``. The U-Net config comes from a ``config.json`` next to the file (or in
  ``unet/`` beside it) when there is one, else from :data:`SD1_UNET_CONFIG` (Stable Diffusion 1.x, with the
  input / output channels read from the checkpoint, so the 9-channel inpainting U-Net loads too). Stable
  Diffusion 2.x single files need their diffusers ``config.json`` (their head widths cannot be read off the
  weights).

Loading is strict: every parameter of the model must be in the checkpoint with its shape, and every U-Net
tensor of the checkpoint must be used; otherwise the error lists what is missing / unexpected / mismatched.
The model is built on the meta device and the checkpoint's tensors are assigned to it, so no time is spent
on a random initialisation that is overwritten anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidgen.config.errors import ConfigError
from vidgen.config.files import (
    DIFFUSERS_WEIGHT_NAMES,
    TRANSFORMERS_WEIGHT_NAMES,
    find_weights,
    read_json_object,
    read_state_dict,
)

__all__ = ["LDM_UNET_PREFIX", "SD1_UNET_CONFIG", "SD_COMPONENTS", "is_ldm_checkpoint", "load_unet"]

#: the config key naming the U-Net checkpoint (errors name it)
UNET_KEY = "model.pretrained_path"
#: prefix of the U-Net's tensors in an original (CompVis / LDM) single-file checkpoint
LDM_UNET_PREFIX = "model.diffusion_model."
#: sub-folders of a Stable Diffusion pipeline folder, and the weights names each uses (None: no weights)
SD_COMPONENTS: dict[str, tuple[str, ...] | None] = {
    "unet": DIFFUSERS_WEIGHT_NAMES,
    "vae": DIFFUSERS_WEIGHT_NAMES,
    "text_encoder": TRANSFORMERS_WEIGHT_NAMES,
    "tokenizer": None,
    "scheduler": None,
}

#: diffusers config of Stable Diffusion 1.x's U-Net (v1-inference.yaml converted; 859,520,964 parameters),
#: used for an LDM single-file checkpoint without a config.json beside it
SD1_UNET_CONFIG: dict[str, Any] = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "use_linear_projection": False,
}

_HINT = (
    "It must name a local Stable Diffusion 1.x folder (with unet/), a diffusers U-Net folder (config.json + "
    "diffusion_pytorch_model.safetensors), a diffusers-layout U-Net weights file next to its config.json, or "
    "an original single-file checkpoint (.ckpt / .safetensors with model.diffusion_model.* keys). Nothing is "
    "downloaded."
)
_SHOWN = 5  # names listed per category in a key-mismatch error


def is_ldm_checkpoint(state: dict[str, Any]) -> bool:
    """Whether a state dict is an original (CompVis / LDM) Stable Diffusion checkpoint (U-Net under
    ``model.diffusion_model.``)."""
    return any(isinstance(k, str) and k.startswith(LDM_UNET_PREFIX) for k in state)


def _looks_like_sd_folder(path: Path) -> bool:
    return (path / "model_index.json").is_file() or any((path / name).is_dir() for name in SD_COMPONENTS)


def _read_unet_config(file: Path, key: str) -> dict[str, Any]:
    """A diffusers ``UNet2DConditionModel`` config from ``file``, checked to be one."""
    config = read_json_object(file, key, "a diffusers model config")
    cls = config.get("_class_name", "UNet2DConditionModel")
    if cls != "UNet2DConditionModel":
        raise ConfigError(
            key, f"'{file}' configures a diffusers '{cls}', not the UNet2DConditionModel of Stable Diffusion"
        )
    return config


def _unet_folder(path: Path, subfolder: str | None, key: str) -> Path:
    """The folder holding the U-Net's ``config.json``: ``path/subfolder`` or ``path`` itself."""
    if subfolder and (path / subfolder / "config.json").is_file():
        return path / subfolder
    if (path / "config.json").is_file():
        return path
    if not subfolder and (path / "unet" / "config.json").is_file():
        return path / "unet"  # a whole Stable Diffusion folder (as the SD VAE loader finds vae/)
    if subfolder and _looks_like_sd_folder(path):
        found = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ConfigError(
            key,
            f"Stable Diffusion folder '{path}' has no {subfolder}/config.json (its sub-folders: "
            f"{', '.join(found) or 'none'}). {_HINT}",
        )
    wanted = f"{subfolder}/config.json (a Stable Diffusion folder) nor " if subfolder else ""
    raise ConfigError(key, f"'{path}' holds neither {wanted}config.json (a diffusers U-Net folder). {_HINT}")


def _config_near(file: Path, subfolder: str | None) -> Path | None:
    """``config.json`` next to a single checkpoint file, or in ``<subfolder>/`` beside it."""
    for candidate in (
        file.parent / "config.json",
        file.parent / subfolder / "config.json" if subfolder else None,
    ):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _unwrap(state: Any, file: Path, key: str) -> dict[str, Any]:
    """The state dict inside a Lightning / LDM ``.ckpt`` (``{"state_dict": ...}``) or a plain one."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ConfigError(key, f"'{file}' does not hold a state dict (name -> tensor)")
    return state


def _sd1_config_for(state: dict[str, Any]) -> dict[str, Any]:
    """:data:`SD1_UNET_CONFIG` with the input / output channels of an LDM checkpoint (e.g. 9 for inpainting)."""
    config = dict(SD1_UNET_CONFIG)
    conv_in = state.get(f"{LDM_UNET_PREFIX}input_blocks.0.0.weight")
    conv_out = state.get(f"{LDM_UNET_PREFIX}out.2.weight")
    if isinstance(conv_in, torch.Tensor) and conv_in.ndim == 4:
        config["in_channels"] = int(conv_in.shape[1])
    if isinstance(conv_out, torch.Tensor) and conv_out.ndim == 4:
        config["out_channels"] = int(conv_out.shape[0])
    return config


def _convert_ldm(
    state: dict[str, Any], config: dict[str, Any], source: str, key: str, extract_ema: bool
) -> dict[str, Any]:
    """Map an LDM checkpoint's U-Net tensors to diffusers names with diffusers' own converter, checking that
    every U-Net tensor of the checkpoint was used."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if not isinstance(config.get("layers_per_block"), int):
        raise ConfigError(
            key, f"{source}: the LDM converter needs an integer layers_per_block in the U-Net config"
        )
    try:
        converted = convert_ldm_unet_checkpoint(state, config, extract_ema=extract_ema)
    except (KeyError, IndexError, AttributeError) as error:
        raise ConfigError(
            key,
            f"{source}: diffusers' LDM converter failed ({type(error).__name__}: {error}); is it a Stable "
            "Diffusion U-Net of this config? Put the matching diffusers config.json next to the file",
        ) from None
    empty = sorted(name for name, value in converted.items() if value is None)
    if empty:
        raise ConfigError(key, f"{source}: the LDM checkpoint lacks the tensors of {_listed(empty)}")
    used = {id(value) for value in converted.values()}
    if extract_ema and sum(k.startswith("model_ema") for k in state) <= 100:
        extract_ema = False  # diffusers' converter falls back to the model weights then
    if not extract_ema:
        unused = sorted(k for k in state if k.startswith(LDM_UNET_PREFIX) and id(state[k]) not in used)
        if unused:
            raise ConfigError(
                key,
                f"{source}: {len(unused)} U-Net tensors of the LDM checkpoint have no place in the diffusers "
                f"U-Net of this config: {_listed(unused)}. Is it a Stable Diffusion 1.x U-Net? Put the "
                "matching diffusers config.json next to the file",
            )
    return converted


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _SHOWN else shown


def _build_unet(
    config: dict[str, Any],
    state: dict[str, Any],
    source: str,
    config_source: str,
    key: str,
    dtype: torch.dtype,
) -> Any:
    """``UNet2DConditionModel(config)`` with ``state`` loaded strictly (built on the meta device, the
    checkpoint's tensors assigned in ``dtype``)."""
    from diffusers import UNet2DConditionModel

    try:
        with torch.device("meta"):
            model = UNet2DConditionModel.from_config(config)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            key, f"{config_source} is not a valid UNet2DConditionModel config: {error}"
        ) from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{name} {tuple(state[name].shape)} vs {tuple(expected[name].shape)}"
        for name in expected
        if name in state and tuple(getattr(state[name], "shape", ())) != tuple(expected[name].shape)
    )
    if missing or unexpected or mismatched:
        parts = [
            f"{label} {len(names)}: {_listed(names)}"
            for label, names in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("other shape", mismatched),
            )
            if names
        ]
        raise ConfigError(
            key,
            f"{source} does not match the U-Net of {config_source} ({'; '.join(parts)}). Give the config.json "
            "that belongs to these weights",
        )
    cast = {name: value.to(dtype) if value.is_floating_point() else value for name, value in state.items()}
    model.load_state_dict(cast, strict=True, assign=True)
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor the state dict does not cover (e.g. a non-persistent buffer): never silently meta
        raise RuntimeError(f"U-Net tensors left uninitialised after loading {source}: {_listed(left)}")
    return model.eval()


def load_unet(
    path: str | Path,
    subfolder: str | None = "unet",
    *,
    key: str = UNET_KEY,
    extract_ema: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Load a Stable Diffusion U-Net (diffusers ``UNet2DConditionModel``) from local files, strictly.

    Args:
        path: a Stable Diffusion pipeline folder, a diffusers U-Net folder, a diffusers-layout weights file
            next to its ``config.json``, or an original LDM single-file checkpoint (see the module docstring).
        subfolder: the U-Net's sub-folder in a pipeline folder (``unet``); also where a single file's
            ``config.json`` may lie (``<file's folder>/<subfolder>/config.json``). A folder ``path`` that has
            its own ``config.json`` is read as the U-Net folder whatever ``subfolder`` says; with None, a
            pipeline folder's ``unet/`` is still found.
        key: the config key named in errors.
        extract_ema: for an LDM checkpoint holding both (``model_ema.*``), take the EMA weights (diffusers'
            ``extract_ema``); by default the ``model.diffusion_model.*`` weights.
        dtype: dtype of the returned parameters (float32 unless asked; fp16 checkpoints are upcast).

    Returns:
        the ``UNet2DConditionModel`` in eval mode, on the CPU, parameters trainable.

    Raises:
        ConfigError: naming ``key`` and the missing / wrong file or component.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(key, f"Stable Diffusion U-Net '{path}' does not exist. {_HINT}")
    if path.is_dir():
        folder = _unet_folder(path, subfolder, key)
        config_file = folder / "config.json"
        weights = find_weights(folder, DIFFUSERS_WEIGHT_NAMES)
        if weights is None:
            raise ConfigError(
                key,
                f"U-Net folder '{folder}' has no weights: expected one of {', '.join(DIFFUSERS_WEIGHT_NAMES)}",
            )
        config = _read_unet_config(config_file, key)
        state = _unwrap(read_state_dict(weights, key), weights, key)
        return _build_unet(config, state, f"'{weights}'", f"'{config_file}'", key, dtype)
    state = _unwrap(read_state_dict(path, key), path, key)
    config_file = _config_near(path, subfolder)
    if is_ldm_checkpoint(state):
        if config_file is not None:
            config, config_source = _read_unet_config(config_file, key), f"'{config_file}'"
        else:
            config, config_source = _sd1_config_for(state), "vidgen's Stable Diffusion 1.x U-Net config"
        converted = _convert_ldm(state, config, f"'{path}'", key, extract_ema)
        return _build_unet(config, converted, f"'{path}' (LDM layout)", config_source, key, dtype)
    if config_file is None:
        beside = path.parent / "config.json"
        alternative = f" or '{path.parent / subfolder / 'config.json'}'" if subfolder else ""
        raise ConfigError(
            key,
            f"'{path}' holds a diffusers-layout U-Net state dict without its config: put the U-Net's "
            f"config.json at '{beside}'{alternative} (an original LDM checkpoint would have "
            f"'{LDM_UNET_PREFIX}*' keys). {_HINT}",
        )
    config = _read_unet_config(config_file, key)
    return _build_unet(config, state, f"'{path}'", f"'{config_file}'", key, dtype)
