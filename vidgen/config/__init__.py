"""Config helpers: errors that name keys, schemas, resolvers."""

from vidgen.config.errors import ConfigError

__all__ = ["ConfigError"]
