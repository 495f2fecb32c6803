"""``hydra.utils.instantiate`` that lets a :class:`ConfigError` from a constructor surface as itself."""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from vidgen.config.errors import ConfigError


def instantiate_node(node: Any, **kwargs: Any) -> Any:
    """Instantiate a ``_target_`` node; a ConfigError raised inside (naming its key) is re-raised unwrapped."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        raise
