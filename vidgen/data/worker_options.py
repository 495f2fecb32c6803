"""DataLoader worker options of the clip data modules: how workers start and how long a batch may take.

Two config keys of every clip data module (``data.worker_timeout``, ``data.worker_start_method``):

- ``worker_timeout`` (seconds, or ``None`` to wait forever): a worker that hands no batch for this long is
  treated as stuck, and the loader raises :class:`WorkerTimeoutError` naming the key. Without it a worker
  stuck in a decoder or on a hung file system stalls the run forever without a word (this project's CI once
  sat at 96% until its limit for that reason: a forked worker waiting on a thread pool it never had).
- ``worker_start_method`` (``fork`` | ``forkserver`` | ``spawn``, or ``None`` for Python's default, ``fork``
  on Linux before Python 3.14): ``forkserver`` and ``spawn`` start each worker from a fresh interpreter
  instead of a copy of the training process and its threads, at the cost of importing torch and vidgen in
  every worker at the start of every epoch and validation.

Both apply only with ``num_workers > 0``: a loader without workers has neither (PyTorch refuses a timeout
there).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from vidgen.config.errors import ConfigError

__all__ = [
    "START_METHODS",
    "WatchedDataLoader",
    "WorkerTimeoutError",
    "checked_start_method",
    "checked_worker_timeout",
    "worker_loader_kwargs",
]

#: the start methods ``data.worker_start_method`` takes (those of :mod:`multiprocessing`)
START_METHODS = ("fork", "forkserver", "spawn")


class WorkerTimeoutError(RuntimeError):
    """No batch came from the DataLoader workers within ``data.worker_timeout`` seconds."""


def checked_worker_timeout(value: Any, key: str = "data.worker_timeout") -> float | None:
    """``value`` as seconds > 0, or ``None`` (no timeout); anything else raises :class:`ConfigError` naming
    ``key``."""
    if value is None:
        return None
    try:
        seconds = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ConfigError(key, f"expected seconds > 0 or null (no timeout), got {value!r}")
    return seconds


def checked_start_method(value: Any, key: str = "data.worker_start_method") -> str | None:
    """``value`` as one of :data:`START_METHODS` this platform has, or ``None`` (Python's default)."""
    if value is None:
        return None
    method = str(value)
    if method not in START_METHODS:
        raise ConfigError(key, f"expected one of {', '.join(START_METHODS)} or null, got {value!r}")
    if method not in multiprocessing.get_all_start_methods():
        available = ", ".join(multiprocessing.get_all_start_methods())
        raise ConfigError(key, f"'{method}' is not available on this platform (available: {available})")
    return method


def worker_loader_kwargs(
    num_workers: int, worker_timeout: float | None, worker_start_method: str | None
) -> dict[str, Any]:
    """The ``DataLoader`` arguments for these options: ``timeout`` and ``multiprocessing_context`` when the
    loader has workers (``num_workers > 0``), nothing otherwise."""
    if num_workers <= 0:
        return {}
    kwargs: dict[str, Any] = {"timeout": float(worker_timeout or 0)}
    if worker_start_method is not None:
        kwargs["multiprocessing_context"] = worker_start_method
    return kwargs


class WatchedDataLoader(DataLoader):
    """A ``DataLoader`` whose worker timeout fails with :class:`WorkerTimeoutError` naming the config key.

    PyTorch raises a bare ``RuntimeError("DataLoader timed out after N seconds")``; this re-raises it with
    what it means and which key sets it. Everything else is ``DataLoader``'s.
    """

    #: the config key named in the timeout's message
    timeout_key = "data.worker_timeout"

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if not self.timeout:  # no timeout (always so without workers: PyTorch refuses one there)
            return super().__iter__()
        return self._watched(super().__iter__())

    def _watched(self, batches: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from batches
        except RuntimeError as error:
            if "timed out" not in str(error):
                raise
            raise WorkerTimeoutError(
                f"no batch from the {self.num_workers} DataLoader workers in {self.timeout:g} s "
                f"({self.timeout_key}): a worker is stuck (a video its decoder hangs on, a stalled file "
                f"system?). Raise {self.timeout_key}, or set it to null to wait without limit; "
                "data.worker_start_method=forkserver starts workers from a fresh process instead of a fork"
            ) from error
