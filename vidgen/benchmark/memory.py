"""Peak memory of one phase of a process (a benchmarked model, one job of a multirun).

On a GPU: the CUDA allocator's peak (``torch.cuda.reset_peak_memory_stats``). On a CPU: the process's peak
resident set size, ``VmHWM`` of ``/proc/self/status``, which Linux resets when ``5`` is written to
``/proc/self/clear_refs``; so several models measured in one process, or the jobs of a multirun (one process),
each get their own peak. Where that is not possible (not Linux), the peak RSS of the whole process so far
(``ru_maxrss``), which includes every earlier phase: its kind says so.
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


def reset_peak_memory(device: torch.device | None = None) -> None:
    """Start a new phase: reset the CUDA peak (``device`` on CUDA, or any initialised CUDA when None) and
    the process's peak RSS (Linux)."""
    if _on_cuda(device):
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory(device: torch.device | None = None) -> tuple[int, str]:
    """``(bytes, kind)``: the peak since :func:`reset_peak_memory` (kinds: :data:`CUDA_PEAK`,
    :data:`RSS_PEAK`; :data:`RSS_SINCE_START` where the RSS peak cannot be reset)."""
    if _on_cuda(device):
        return int(torch.cuda.max_memory_allocated(device)), CUDA_PEAK
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, RSS_PEAK
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024), RSS_SINCE_START
