"""User-provided weight files for metrics: found through config paths or the ``VIDGEN_WEIGHTS`` folder,
checked (existence, size, sha256) before any sampling starts, failing with the file, the metric and what the
file is."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_ENV = "VIDGEN_WEIGHTS"


class MissingWeightsError(FileNotFoundError):
    """A metric's weight file is missing or is not the expected file."""


@dataclass(frozen=True)
class WeightFile:
    """One weight file a metric needs.

    Attributes:
        path: where it is expected (absolute, or relative to ``$VIDGEN_WEIGHTS`` / the working directory).
        metric: the metric that needs it (e.g. ``fvd``).
        description: what the file is and where people usually get it.
        sha256: expected hex digest, when known.
        size: expected size in bytes, when known.
    """

    path: Path
    metric: str
    description: str
    sha256: str | None = None
    size: int | None = None

    def resolve(self) -> Path:
        """The file's location: ``path`` as given if it exists, else under ``$VIDGEN_WEIGHTS``."""
        path = Path(self.path).expanduser()
        if path.is_file() or path.is_absolute():
            return path
        folder = os.environ.get(WEIGHTS_ENV)
        return Path(folder) / path if folder else path

    def check(self, verify_hash: bool = True) -> Path:
        """Return the resolved path, or raise :class:`MissingWeightsError` naming file, metric and contents."""
        path = self.resolve()
        if not path.is_file():
            raise MissingWeightsError(
                f"metric '{self.metric}' needs '{path}' ({self.description}); it is not there. Put the file "
                f"there, point the metric's config at it, or set {WEIGHTS_ENV} to the folder holding it. "
                "Nothing is downloaded."
            )
        if self.size is not None and path.stat().st_size != self.size:
            raise MissingWeightsError(
                f"metric '{self.metric}': '{path}' has {path.stat().st_size} bytes, expected {self.size} "
                f"({self.description})"
            )
        if verify_hash and self.sha256 is not None:
            digest = sha256_of(path)
            if digest != self.sha256:
                raise MissingWeightsError(
                    f"metric '{self.metric}': '{path}' has sha256 {digest}, expected {self.sha256} "
                    f"({self.description}); refusing a different file"
                )
        return path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
