"""What every command-line entry point needs from its surroundings: the config tree and the device."""

from __future__ import annotations

from pathlib import Path

import torch

from vidgen.config.errors import ConfigError

__all__ = ["CONFIG_DIR", "pick_device"]

#: Absolute path of the config tree (``conf/`` at the top of the repository), as ``hydra.main`` wants it.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def pick_device(name: str) -> torch.device:
    """The ``device`` setting of a CLI as a torch device: ``auto`` is CUDA when a GPU is visible, else CPU.

    Raises:
        ConfigError: ``device`` when ``cuda`` is requested and no GPU is available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but no GPU is available")
    return torch.device(name)
