"""OmegaConf resolvers used by the config tree (registered when :mod:`vidgen` is imported)."""

from __future__ import annotations

from typing import Any

from omegaconf import ListConfig, OmegaConf


def _divide_exact(numerator: Any, denominator: int) -> int | list[int]:
    """``${vidgen.div:a,b}``: integer a / b, refusing a remainder (e.g. a resolution the VAE cannot halve);
    ``a`` may be a list (a non-square ``[H, W]`` frame size), divided element by element."""
    if isinstance(numerator, ListConfig | list | tuple):
        return [_divide_exact(item, denominator) for item in numerator]
    numerator, denominator = int(numerator), int(denominator)
    if denominator <= 0 or numerator % denominator:
        raise ValueError(f"{numerator} is not divisible by {denominator}")
    return numerator // denominator


def _choose(condition: bool | str, if_true: str, if_false: str) -> str:
    """``${vidgen.if:cond,a,b}``: ``a`` when ``cond`` is true (a bool, or the strings true / false), else ``b``."""
    if isinstance(condition, str):
        if condition.lower() not in ("true", "false"):
            raise ValueError(f"vidgen.if needs true or false, got {condition!r}")
        condition = condition.lower() == "true"
    return if_true if condition else if_false


def _equals(a: object, b: object) -> bool:
    """``${vidgen.eq:a,b}``: whether the two values are equal as strings."""
    return str(a) == str(b)


def _cpu_fast_precision() -> str:
    """``${vidgen.cpu_fast_precision:}``: ``bf16-mixed`` on a CPU with bf16 matrix instructions (AVX-512 BF16,
    AMX, Arm BF16; read from /proc/cpuinfo, never assumed), else ``32-true`` (bf16 without them runs in
    software, many times slower: vidgen/lit/cpu_precision.py)."""
    from vidgen.lit.cpu_precision import cpu_has_bf16_matmul

    return "bf16-mixed" if cpu_has_bf16_matmul() else "32-true"


def register_resolvers() -> None:
    """Register vidgen's resolvers once (safe to call repeatedly)."""
    if not OmegaConf.has_resolver("vidgen.div"):
        OmegaConf.register_new_resolver("vidgen.div", _divide_exact)
    if not OmegaConf.has_resolver("vidgen.if"):
        OmegaConf.register_new_resolver("vidgen.if", _choose)
    if not OmegaConf.has_resolver("vidgen.eq"):
        OmegaConf.register_new_resolver("vidgen.eq", _equals)
    if not OmegaConf.has_resolver("vidgen.cpu_fast_precision"):
        OmegaConf.register_new_resolver("vidgen.cpu_fast_precision", _cpu_fast_precision)
