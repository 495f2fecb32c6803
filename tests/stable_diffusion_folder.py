"""Test helper: what a local Stable Diffusion pipeline folder holds, component by component."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidgen.config.files import find_weights
from vidgen.models.stable_diffusion import SD_COMPONENTS

#: the config file(s) of the components whose config is not ``config.json``, in the order they are looked for
CONFIG_NAMES = {
    "tokenizer": ("tokenizer_config.json", "vocab.json"),
    "scheduler": ("scheduler_config.json",),
}


def inspect_stable_diffusion_folder(path: str | Path) -> dict[str, Any]:
    """Report which components of a Stable Diffusion pipeline folder exist.

    Returns:
        ``{"path", "model_index" (bool), "components": {name: {"folder", "exists", "config", "weights"}}}``
        for ``unet``, ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``: ``config`` is the config file
        (``config.json``; ``tokenizer_config.json`` / ``vocab.json`` for the tokenizer;
        ``scheduler_config.json``) or None, ``weights`` the weights file found (None where there is none or
        the component has no weights).
    """
    root = Path(path).expanduser()
    components: dict[str, dict[str, Any]] = {}
    for name, weights_names in SD_COMPONENTS.items():
        folder = root / name
        config = next(
            (folder / c for c in CONFIG_NAMES.get(name, ("config.json",)) if (folder / c).is_file()), None
        )
        weights = find_weights(folder, weights_names) if weights_names else None
        components[name] = {
            "folder": str(folder),
            "exists": folder.is_dir(),
            "config": str(config) if config else None,
            "weights": str(weights) if weights else None,
        }
    return {"path": str(root), "model_index": (root / "model_index.json").is_file(), "components": components}
