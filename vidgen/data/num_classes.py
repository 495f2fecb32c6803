"""``data.num_classes: null`` = read from the data: fill it in the composed config before anything that
interpolates it (``conditioner.num_classes: ${data.num_classes}``, the denoiser's label table) is built."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

__all__ = ["fill_num_classes"]


def _target(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def fill_num_classes(cfg: DictConfig) -> int | None:
    """Set ``cfg.data.num_classes`` from the data when it is null and the data module can count its classes
    without decoding (its ``count_classes`` static method, called with the node's matching keys). Returns
    the number set, or None when nothing was changed (no data node, a number already set, or a data module
    that cannot count).

    Raises:
        ConfigError: from the data module's count (a missing ``data.root``, unreadable split lists, ...).
    """
    node = cfg.get("data")
    if node is None or "num_classes" not in node or node.get("num_classes") is not None:
        return None
    counter = getattr(_target(str(node._target_)), "count_classes", None)
    if counter is None:
        return None
    values = OmegaConf.to_container(node, resolve=True)
    accepted = inspect.signature(counter).parameters
    count = int(counter(**{k: v for k, v in values.items() if k in accepted}))  # type: ignore[union-attr]
    with open_dict(cfg):
        cfg.data.num_classes = count
    return count
