"""Errors raised when a configuration value is wrong; they always name the config key."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid. ``key`` is the dotted config path (e.g. ``data.root``)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")
