"""Checks of single config values that constructors run, each failing with a :class:`ConfigError` naming the
key (``model.depth: must be an integer >= 1, got 0``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from vidgen.config.errors import ConfigError

__all__ = ["checked_choice", "checked_int"]


def checked_int(key: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (numpy's included, bool not) ``>= minimum``; otherwise a
    :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def checked_choice(key: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``; otherwise a :class:`ConfigError` naming ``key`` and the choices."""
    if value not in choices:
        raise ConfigError(key, f"unknown value {value!r}; choose one of {', '.join(map(str, choices))}")
    return value
