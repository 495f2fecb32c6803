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

    def searched(self) -> list[Path]:
        """Every absolute place :meth:`resolve` looks for the file: ``path`` as given (relative to the working
        directory), then under ``$VIDGEN_WEIGHTS`` when the path is relative and that variable is set."""
        path = Path(self.path).expanduser()
        places = [path.absolute()]
        folder = os.environ.get(WEIGHTS_ENV)
        if folder and not path.is_absolute():
            places.append((Path(folder).expanduser() / path).absolute())
        return places

    def problem(self, verify_hash: bool = True) -> str | None:
        """What is wrong with the file (``None``: it is there and, where known, of the expected size and
        sha256): one line that names the metric, the file's absolute path and what the file is."""
        path = self.resolve()
        where = f"metric '{self.metric}': '{path.absolute()}'"
        if not path.is_file():
            looked = " and ".join(f"'{place}'" for place in self.searched())
            return f"{where} is not there ({self.description}); looked for {looked}"
        if self.size is not None and path.stat().st_size != self.size:
            return f"{where} has {path.stat().st_size} bytes, expected {self.size} ({self.description})"
        if verify_hash and self.sha256 is not None:
            digest = sha256_of(path)
            if digest != self.sha256:
                return (
                    f"{where} has sha256 {digest}, expected {self.sha256} ({self.description}); refusing a "
                    "different file"
                )
        return None

    def check(self, verify_hash: bool = True) -> Path:
        """Return the resolved path, or raise :class:`MissingWeightsError` naming file, metric and contents."""
        problem = self.problem(verify_hash)
        if problem is not None:
            raise MissingWeightsError(f"{problem}. {how_to_provide()}")
        return self.resolve()


def how_to_provide() -> str:
    """The fix for missing weight files, naming the folder ``$VIDGEN_WEIGHTS`` points at (or that it is unset)."""
    folder = os.environ.get(WEIGHTS_ENV)
    searched = (
        f"{WEIGHTS_ENV}={Path(folder).expanduser().absolute()}"
        if folder
        else f"{WEIGHTS_ENV} is not set, so relative paths are looked for in the working directory "
        f"{Path.cwd()} only"
    )
    return (
        f"Searched: paths as given, then under ${WEIGHTS_ENV} ({searched}). Put the files there, point the "
        f"metrics' configs at them (metrics.<name>.weights / .checkpoint), or set {WEIGHTS_ENV} to the folder "
        "holding them. Nothing is downloaded"
    )


def check_weight_files(files: list[WeightFile], verify_hash: bool = True) -> list[Path]:
    """Check every file and report every problem at once: a :class:`MissingWeightsError` listing each missing
    or wrong file (absolute path, the metrics that need it, what it is) and the folders searched. Returns the
    resolved paths, in order, when all are fine."""
    problems: dict[str, list[str]] = {}  # one line per file, with the metrics that need it
    for weight in files:
        problem = weight.problem(verify_hash)
        if problem is not None:
            key = str(weight.resolve().absolute())
            problems.setdefault(key, [problem, weight.metric])
            if weight.metric not in problems[key][1:]:
                problems[key].append(weight.metric)
    if problems:
        lines = []
        for first, *metrics in problems.values():
            also = f" (also needed by {', '.join(repr(m) for m in metrics[1:])})" if len(metrics) > 1 else ""
            lines.append(f"  - {first}{also}")
        count = f"{len(lines)} weight file{'s' if len(lines) > 1 else ''}"
        raise MissingWeightsError(
            f"{count} of the requested metrics missing or wrong:\n"
            + "\n".join(lines)
            + f"\n{how_to_provide()}."
        )
    return [weight.resolve() for weight in files]


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
