"""Finding the checkpoint a training run resumes from (``ckpt_path``), and reading a vidgen checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from vidgen.config.errors import ConfigError

__all__ = ["SHARDED_METADATA_FILE", "read_checkpoint", "resolve_ckpt_path"]


def resolve_ckpt_path(value: str | None, run_dir: Path, runs_root: Path) -> Path | None:
    """``ckpt_path``: None -> fresh start; ``last`` -> newest ``last.ckpt`` (this run dir first); or a path.

    A checkpoint is a ``.ckpt`` file, or a folder of the same name for sharded (FSDP) checkpoints.
    ``runs_root`` is the folder of this task's run directories (``<output_root>/<task_name>/runs``).

    Raises:
        ConfigError: ``ckpt_path`` when ``last`` finds no checkpoint or the given path does not exist.
    """
    if value in (None, ""):
        return None
    if value == "last":
        here = run_dir / "checkpoints" / "last.ckpt"
        if here.exists():
            return here
        candidates = sorted(runs_root.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(
                "ckpt_path", f"'last' found no checkpoints/last.ckpt in {run_dir} or under {runs_root}"
            )
        return candidates[-1]
    path = Path(value)
    if not path.exists():
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    return path


# the file Lightning's model-parallel strategy writes next to the shards of a distributed checkpoint
SHARDED_METADATA_FILE = "meta.pt"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a vidgen checkpoint safely (``weights_only=True``), failing clearly on a missing/foreign file.

    ``path`` is a ``.ckpt`` file, or the folder of a sharded checkpoint written under FSDP (one
    ``__<rank>_0.distcp`` shard per rank and ``meta.pt``): its model weights are consolidated in this
    process, without a process group (the optimizer state is not read).
    """
    path = Path(path)
    if path.is_dir():
        checkpoint = _read_sharded_checkpoint(path)
    elif path.is_file():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ConfigError("ckpt_path", f"checkpoint '{path}' does not exist")
    if "vidgen_config" not in checkpoint or checkpoint["vidgen_config"] is None:
        raise ConfigError("ckpt_path", f"'{path}' is not a vidgen training checkpoint (no stored config)")
    return checkpoint


def _read_sharded_checkpoint(folder: Path) -> dict[str, Any]:
    """Metadata + full model ``state_dict`` of a distributed (DCP) checkpoint folder, in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    meta_file = folder / SHARDED_METADATA_FILE
    if not meta_file.is_file():
        raise ConfigError(
            "ckpt_path", f"'{folder}' is a folder but not a sharded checkpoint (no {SHARDED_METADATA_FILE})"
        )
    checkpoint = torch.load(meta_file, map_location="cpu", weights_only=True)
    reader = dcp.FileSystemReader(str(folder))
    prefix = "state_dict."
    state: dict[str, torch.Tensor] = {}
    for key, item in reader.read_metadata().state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            state[key[len(prefix) :]] = torch.empty(item.size, dtype=item.properties.dtype)
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process.*")
        dcp.load({"state_dict": state}, storage_reader=reader, no_dist=True)
    checkpoint["state_dict"] = state
    return checkpoint
