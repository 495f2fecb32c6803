"""bf16 on a CPU without bf16 matrix instructions: autocast then runs bf16 products in software, about 8x
(linears) to over 100x (backward matmuls) slower than fp32 (measured on such a CPU, issue 14). Detected from
the CPU's flags, never assumed: the same code runs on machines with and without them."""

from __future__ import annotations

import warnings
from pathlib import Path

#: /proc/cpuinfo flags that mean hardware bf16 matrix products (x86: AVX-512 BF16, AMX; Arm: the BF16
#: extension)
BF16_MATMUL_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bf16_matmul(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU lists a bf16 matrix instruction set in ``cpuinfo``; None when it cannot be read
    (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features") and BF16_MATMUL_FLAGS & set(value.split()):
            return True
    return False


def slow_bf16_warning(
    accelerator: str, precision: str, has_bf16: bool | None, key: str = "trainer.precision"
) -> str | None:
    """The warning for precision ``key`` = bf16 on a CPU that lacks bf16 matrix instructions, else None
    (another accelerator, another precision, or flags that could not be read)."""
    if str(accelerator) != "cpu" or "bf16" not in str(precision) or has_bf16 is not False:
        return None
    return (
        f"{key}={precision} on a CPU without bf16 matrix instructions (no avx512_bf16 / amx_bf16 "
        "in /proc/cpuinfo): bf16 products run in software, about 8x (linears) to 100x (backward) slower than "
        f"fp32. Use {key}=32-true on this machine."
    )


def warn_if_slow_bf16(accelerator: str, precision: str, key: str = "trainer.precision") -> str | None:
    """Warn (and print, so it shows above a progress bar) when :func:`slow_bf16_warning` applies to this
    machine's CPU; returns the message or None."""
    message = slow_bf16_warning(accelerator, precision, cpu_has_bf16_matmul(), key)
    if message:
        warnings.warn(message, stacklevel=3)
        print(f"vidgen: warning: {message}")
    return message
