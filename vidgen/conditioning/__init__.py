"""Conditioners: turn a batch's labels / captions into a :class:`Cond` for the denoiser."""

from vidgen.conditioning.base import Conditioner
from vidgen.conditioning.cond import Cond
from vidgen.conditioning.conditioners import (
    CONDITIONER_KINDS,
    ClassConditioner,
    NoConditioner,
    build_conditioner,
)
from vidgen.conditioning.text import TextConditioner

__all__ = [
    "CONDITIONER_KINDS",
    "ClassConditioner",
    "Cond",
    "Conditioner",
    "NoConditioner",
    "TextConditioner",
    "build_conditioner",
]
