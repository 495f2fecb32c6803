"""Reading the files that config values point at: the small JSON files (model configs, weight indexes,
tokenizer settings) and weights files (diffusers / transformers model folders, safetensors, sharded indexes,
torch pickles read with ``weights_only``), with errors that name the config key."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from vidgen.config.errors import ConfigError


def read_json_object(file: str | Path, key: str, what: str = "a JSON object") -> dict[str, Any]:
    """The JSON object in ``file``. A missing or unreadable file, invalid JSON, or a JSON value that is not an
    object raises :class:`ConfigError` naming ``key`` and the file (``what`` says what the file should be)."""
    try:
        with open(file, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(key, f"cannot read '{file}' ({what}): {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(key, f"'{file}' is not {what}: its JSON is a {type(data).__name__}, not an object")
    return data


#: weights file names of a diffusers model folder, in the order they are preferred
DIFFUSERS_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
#: weights file names of a Hugging Face transformers model folder (the text encoder), in preferred order
TRANSFORMERS_WEIGHT_NAMES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "model.fp16.safetensors",
    "pytorch_model.fp16.bin",
)


def find_weights(folder: Path, names: Iterable[str] = DIFFUSERS_WEIGHT_NAMES) -> Path | None:
    """The first of ``names`` that is a file in ``folder``, or None."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def read_state_dict(file: str | Path, key: str) -> dict[str, Any]:
    """Read a checkpoint file as it is stored: ``.safetensors``, a sharded ``*.index.json`` (its
    ``weight_map`` shards, next to it), or a torch pickle read with ``weights_only=True`` (never executing
    code). Errors name ``key``."""
    from safetensors.torch import load_file

    file = Path(file)
    if not file.is_file():
        raise ConfigError(key, f"checkpoint file '{file}' does not exist")
    if file.name.endswith(".index.json"):
        weight_map = read_json_object(file, key, "a sharded-weights index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConfigError(key, f"'{file}' is not a sharded-weights index (no 'weight_map')")
        state: dict[str, Any] = {}
        for shard in sorted(set(weight_map.values())):
            state.update(read_state_dict(file.parent / shard, key))
        return state
    if file.suffix == ".safetensors":
        return load_file(str(file))
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for objects other than tensors, or a corrupt file
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            key,
            f"cannot read '{file}' with torch.load(weights_only=True) ({first}); it may hold Python objects other "
            "than tensors, which are never unpickled here: save its state dict alone (or as .safetensors)",
        ) from None
