"""What every command-line entry point needs from its surroundings: the config tree and the device.

The YAML tree lives in ``conf/`` at the top of the repository. An installed wheel carries it inside the
package as ``vidgen/conf/`` (``pyproject.toml`` maps the package ``vidgen.conf`` to ``conf/``); a source
checkout or an editable install (``pip install -e .``) reads the repository's ``conf/`` directly, so edits
to it take effect at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vidgen.config.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["CONFIG_DIR", "find_config_dir", "pick_device"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def find_config_dir(package_dir: Path = _PACKAGE_DIR) -> Path:
    """The folder of Hydra configs: ``<package_dir>/conf`` in an installed wheel, else the source
    checkout's ``conf/`` next to the package folder (returned even when missing: Hydra then names it)."""
    installed = package_dir / "conf"
    if installed.is_dir():
        return installed
    return package_dir.parent / "conf"


#: Absolute path of the config tree, as ``hydra.main(config_path=...)`` wants it.
CONFIG_DIR = str(find_config_dir())


def pick_device(name: str) -> torch.device:
    """The ``device`` setting of a CLI as a torch device: ``auto`` is CUDA when a GPU is visible, else CPU.

    Raises:
        ConfigError: ``device`` when ``cuda`` is requested and no GPU is available.
    """
    import torch  # here, not at the top: the CLIs import this module before Hydra's --help

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but no GPU is available")
    return torch.device(name)
