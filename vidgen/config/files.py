"""Reading the small JSON files that config values point at (model configs, weight indexes, tokenizer
settings), with errors that name the config key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
