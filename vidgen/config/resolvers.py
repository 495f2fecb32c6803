"""OmegaConf resolvers used by the config tree (registered when :mod:`vidgen` is imported)."""

from __future__ import annotations

from omegaconf import OmegaConf


def _divide_exact(numerator: int, denominator: int) -> int:
    """``${vidgen.div:a,b}``: integer a / b, refusing a remainder (e.g. a resolution the VAE cannot halve)."""
    numerator, denominator = int(numerator), int(denominator)
    if denominator <= 0 or numerator % denominator:
        raise ValueError(f"{numerator} is not divisible by {denominator}")
    return numerator // denominator


def register_resolvers() -> None:
    """Register vidgen's resolvers once (safe to call repeatedly)."""
    if not OmegaConf.has_resolver("vidgen.div"):
        OmegaConf.register_new_resolver("vidgen.div", _divide_exact)
