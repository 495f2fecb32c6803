"""On-disk cache of real-data feature statistics (e.g. FVD's I3D sums over 2048 real clips).

An entry is named by what determines it: the dataset key (name, root, split, frames, stride, resolution,
number of clips, ...) and the metric key (protocol and feature network, from
:meth:`vidgen.metrics.base.VideoMetric.real_cache_key`). Both are hashed (sha256 of canonical JSON) into the
file name, behind a readable prefix::

    <root>/<dataset name>-<metric name>-<first 16 hex digits>.npz
    <root>/<same>.json     # sidecar: the keys and the arrays' shapes / dtypes, for people

Writes are atomic (temporary file + ``os.replace``), so an interrupted run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StatsCache", "canonical_json"]


def _jsonable(value: Any, where: str) -> Any:
    """Plain JSON values for the key; refuses types whose text form would not be stable."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise TypeError(f"cache key {where}: non-finite float {value}")
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"cache key {where}: keys must be strings, got {key!r}")
            out[key] = _jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise TypeError(f"cache key {where}: cannot hash a value of type {type(value).__name__} ({value!r})")


def canonical_json(value: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces; Paths as strings, tuples as lists) of a cache key."""
    return json.dumps(_jsonable(value, "key"), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _slug(text: Any, fallback: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._]+", "_", str(text)).strip("._")
    return slug[:40] or fallback


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class StatsCache:
    """A folder of cached statistics: ``.npz`` arrays with ``.json`` sidecars.

    Args:
        root: the folder (created on the first save).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self._keys: dict[Path, dict[str, Any]] = {}

    def path_for(self, dataset_key: Mapping[str, Any], metric_key: Mapping[str, Any]) -> Path:
        """The entry's path: readable prefix + sha256 of the canonical JSON of both keys."""
        key = {"dataset": _jsonable(dataset_key, "dataset"), "metric": _jsonable(metric_key, "metric")}
        digest = hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()
        prefix = f"{_slug(dataset_key.get('name'), 'data')}-{_slug(metric_key.get('metric'), 'metric')}"
        path = self.root / f"{prefix}-{digest[:16]}.npz"
        self._keys[path] = {**key, "sha256": digest}
        return path

    def load(self, path: str | Path) -> dict[str, np.ndarray] | None:
        """The cached arrays, or ``None`` when there is no (readable) entry."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: np.array(data[name]) for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            warnings.warn(f"ignoring unreadable statistics cache '{path}': {error}", stacklevel=2)
            return None

    def save(
        self, path: str | Path, state: Mapping[str, np.ndarray], description: dict | None = None
    ) -> Path:
        """Atomically write ``state`` to ``path`` (``.npz``) and a ``.json`` sidecar describing the entry.

        The sidecar holds the dataset and metric keys (when ``path`` came from :meth:`path_for`), the arrays'
        shapes and dtypes, the time of writing, and ``description`` if given.
        """
        path = Path(path)
        arrays = {name: np.asarray(value) for name, value in state.items()}
        if not arrays:
            raise ValueError(f"refusing to cache an empty state at '{path}'")
        _atomic_write(path, lambda handle: np.savez(handle, **arrays))
        sidecar = {
            **self._keys.get(path, {}),
            "arrays": {name: {"shape": list(a.shape), "dtype": str(a.dtype)} for name, a in arrays.items()},
            "written": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if description:
            sidecar["description"] = _jsonable(description, "description")
        text = json.dumps(sidecar, indent=2, sort_keys=True) + "\n"
        _atomic_write(path.with_suffix(".json"), lambda handle: handle.write(text.encode("utf-8")))
        return path
