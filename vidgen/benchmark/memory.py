"""Peak memory of one phase of a process (a benchmarked model, one job of a multirun).

On a GPU: the CUDA allocator's peak (``torch.cuda.reset_peak_memory_stats``). On a CPU: the process's peak
resident set size, ``VmHWM`` of ``/proc/self/status``, which Linux resets when ``5`` is written to
``/proc/self/clear_refs``; so several models measured in one process, or the jobs of a multirun (one process),
each get their own peak. The reset is checked, not assumed: some kernels and sandboxes accept the write and
keep the old peak (seen on a CI machine). Where the peak cannot be reset (not Linux, or the reset did not take),
the peak RSS of the whole process so far, which includes every earlier phase: its kind says so.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

import torch

__all__ = ["CUDA_PEAK", "RSS_PEAK", "RSS_SINCE_START", "peak_memory", "reset_peak_memory"]

#: kinds of :func:`peak_memory`
CUDA_PEAK = "CUDA allocator peak"
RSS_PEAK = "process peak RSS"
RSS_SINCE_START = "process peak RSS since start"


def _on_cuda(device: torch.device | None) -> bool:
    if device is not None:
        return device.type == "cuda"
    return torch.cuda.is_available() and torch.cuda.is_initialized()


#: whether the last :func:`reset_peak_memory` brought the RSS peak down to the RSS of the moment
_rss_reset_took = False
#: the RSS peak may exceed the current RSS by this much right after a reset that took (pages touched between
#: the write and the read)
_RESET_SLACK = 16 * 2**20


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes (``VmHWM``, ``VmRSS``); None where there is none."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def reset_peak_memory(device: torch.device | None = None) -> None:
    """Start a new phase: reset the CUDA peak (``device`` on CUDA, or any initialised CUDA when None) and
    the process's peak RSS (Linux; checked afterwards against the current RSS)."""
    global _rss_reset_took
    if _on_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    _rss_reset_took = False
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        peak, now = _status_kib("VmHWM"), _status_kib("VmRSS")
        _rss_reset_took = peak is not None and now is not None and peak - now <= _RESET_SLACK


def peak_memory(device: torch.device | None = None) -> tuple[int, str]:
    """``(bytes, kind)``: the peak since :func:`reset_peak_memory` (kinds: :data:`CUDA_PEAK`,
    :data:`RSS_PEAK`; :data:`RSS_SINCE_START` where the RSS peak cannot be reset)."""
    if _on_cuda(device):
        return int(torch.cuda.max_memory_allocated(device)), CUDA_PEAK
    peak = _status_kib("VmHWM")
    if peak is not None:
        return peak, RSS_PEAK if _rss_reset_took else RSS_SINCE_START
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), RSS_SINCE_START
