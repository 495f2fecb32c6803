"""``conditions.json``: what each generated sample of a folder was generated for (class label, caption).

``vidgen.sample`` writes it next to the samples; ``vidgen.evaluate fake_dir=...`` reads it back, so that
conditional metrics (class accuracy, CLIPSIM) see the conditions of every file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CONDITIONS_FILE", "read_conditions", "write_conditions"]

#: file name of the conditions of a folder of samples
CONDITIONS_FILE = "conditions.json"


def write_conditions(
    folder: str | Path,
    files: Sequence[Path],
    labels: Sequence[int] | None = None,
    captions: Sequence[str] | None = None,
) -> Path | None:
    """Write ``{"labels": {file name: label}, "captions": {file name: caption}}`` (the parts that are given)
    for the sample ``files`` (in the order of ``labels`` / ``captions``; extra files such as the grid are
    ignored). Returns the written path, or None when there is nothing to write."""
    conditions: dict[str, dict] = {}
    if labels is not None:
        conditions["labels"] = {p.name: int(label) for p, label in zip(files, labels)}
    if captions is not None:
        conditions["captions"] = {p.name: str(caption) for p, caption in zip(files, captions)}
    if not conditions:
        return None
    path = Path(folder) / CONDITIONS_FILE
    path.write_text(json.dumps(conditions, indent=2))
    return path


def read_conditions(folder: str | Path) -> dict[str, dict]:
    """The conditions of ``folder`` (``{}`` when it has no :data:`CONDITIONS_FILE`)."""
    path = Path(folder) / CONDITIONS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
