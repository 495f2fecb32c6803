"""Checks of single config values that constructors run, each failing with a :class:`ConfigError` naming the
key (``model.depth: must be an integer >= 1, got 0``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np

from vidgen.config.errors import ConfigError

__all__ = ["checked_choice", "checked_frame_size", "checked_int", "checked_square_side"]


def checked_int(key: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (numpy's included, bool not) ``>= minimum``; otherwise a
    :class:`ConfigError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def checked_frame_size(key: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    """``(H, W)`` from one integer (a square frame) or a pair ``[H, W]`` of integers ``>= minimum``; otherwise
    a :class:`ConfigError` naming ``key`` (``data.resolution=[512,1024]``: 512 rows, 1024 columns)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        side = checked_int(key, value, minimum)
        return side, side
    pair = list(value)
    if len(pair) != 2:
        raise ConfigError(key, f"must be one integer or a pair [height, width], got {pair!r}")
    return checked_int(key, pair[0], minimum), checked_int(key, pair[1], minimum)


def checked_square_side(key: str, value: Any, who: str, minimum: int = 1) -> int:
    """The side of a square frame size (one integer or ``[R, R]``); a non-square ``[H, W]`` fails naming ``key``
    and ``who`` (the part that needs square frames)."""
    height, width = checked_frame_size(key, value, minimum)
    if height != width:
        raise ConfigError(
            key,
            f"{who} needs square frames (one side length), got [{height}, {width}]; data.resolution=[H, W] "
            "works with Latte, CMD and the latent U-Nets",
        )
    return height


def checked_choice(key: str, value: Any, choices: Collection[Any]) -> Any:
    """``value`` if it is one of ``choices``; otherwise a :class:`ConfigError` naming ``key`` and the choices."""
    if value not in choices:
        raise ConfigError(key, f"unknown value {value!r}; choose one of {', '.join(map(str, choices))}")
    return value
