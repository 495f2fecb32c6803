"""Finding the checkpoint a training run resumes from (``ckpt_path``), and reading a vidgen checkpoint."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from vidgen.config.errors import ConfigError

__all__ = [
    "INVALID_CHECKPOINT",
    "SHARDED_METADATA_FILE",
    "check_checkpoint",
    "check_checkpoint_content",
    "invalid_checkpoint",
    "read_checkpoint",
    "resolve_ckpt_path",
]


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
# the index torch.distributed.checkpoint writes into a sharded checkpoint folder, after every shard
_SHARDED_INDEX_FILE = ".metadata"
#: the words of every refusal of a file that cannot be a vidgen checkpoint
INVALID_CHECKPOINT = "not a valid vidgen checkpoint"
#: entries every checkpoint written by ``vidgen.train`` holds (besides Lightning's loop and optimizer state)
REQUIRED_KEYS = ("state_dict", "vidgen_config")


def invalid_checkpoint(path: Path, reason: str, key: str = "ckpt_path") -> ConfigError:
    """The :class:`ConfigError` for a file that is not a vidgen checkpoint: names ``key``, the file (absolute)
    and the reason."""
    return ConfigError(key, f"'{Path(path).absolute()}' is {INVALID_CHECKPOINT}: {reason}")


def _load_file(path: Path, key: str, mmap: bool = False) -> Any:
    """``torch.load`` of one checkpoint file (tensors only); an empty, truncated or corrupt file is refused.

    ``mmap=True`` maps the tensors instead of reading them (a cheap look at a large file before training).
    """
    if path.stat().st_size == 0:
        raise invalid_checkpoint(
            path, "the file is empty (0 bytes): a save or a copy that never finished", key
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # zip reader, unpickler, EOF, mmap: any failure means the file is unusable
        first = (str(error).strip().splitlines() or [""])[0].split(". ")[0]  # torch's advice repeats ours
        raise invalid_checkpoint(
            path,
            f"torch.load cannot read it ({type(error).__name__}: {first}); the file is truncated or "
            "corrupt (a save or a copy that did not finish?) or was not written by torch.save",
            key,
        ) from error


def check_checkpoint_content(checkpoint: Any, path: Path, key: str = "ckpt_path") -> None:
    """A loaded checkpoint must be a dict holding :data:`REQUIRED_KEYS` (what ``vidgen.train`` writes)."""
    if not isinstance(checkpoint, dict):
        raise invalid_checkpoint(
            path, f"it holds a {type(checkpoint).__name__}, not the dict of a Lightning checkpoint", key
        )
    missing = [name for name in REQUIRED_KEYS if checkpoint.get(name) is None]
    if missing:
        found = sorted(str(name) for name in checkpoint)
        shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") if found else "none"
        raise invalid_checkpoint(
            path,
            f"it has no {' and no '.join(missing)} (a checkpoint of vidgen.train has both); its keys: {shown}",
            key,
        )


def check_checkpoint(path: str | Path, resume: bool = False, key: str = "ckpt_path") -> None:
    """Refuse a checkpoint that cannot be read, before any model is built.

    A ``.ckpt`` file is opened with its tensors memory-mapped (cheap also for large files) and must hold
    :data:`REQUIRED_KEYS`; with ``resume`` it must also hold the optimizer state that ``trainer.fit`` restores.
    A sharded folder must hold its ``meta.pt`` (with the stored config) and the shards' index.

    Raises:
        ConfigError: ``key``, with "not a valid vidgen checkpoint" and the file, or "does not exist".
    """
    path = Path(path)
    if path.is_dir():
        _check_sharded_folder(path, key)
        return
    if not path.is_file():
        raise ConfigError(key, f"checkpoint '{path}' does not exist")
    checkpoint = _load_file(path, key, mmap=True)
    check_checkpoint_content(checkpoint, path, key)
    if resume and "optimizer_states" not in checkpoint:
        raise ConfigError(
            key,
            f"'{path.absolute()}' holds the weights only (no optimizer state: saved with save_weights_only?): "
            "it can be sampled and evaluated, but training cannot resume from it",
        )


def _check_sharded_folder(folder: Path, key: str) -> None:
    """A sharded (FSDP) checkpoint folder: ``meta.pt`` readable with the stored config, and the shard index."""
    meta_file = folder / SHARDED_METADATA_FILE
    if not meta_file.is_file():
        raise invalid_checkpoint(
            folder, f"a folder without {SHARDED_METADATA_FILE} (not a sharded checkpoint)", key
        )
    meta = _load_file(meta_file, key)
    if not isinstance(meta, dict) or meta.get("vidgen_config") is None:
        raise invalid_checkpoint(meta_file, "it holds no vidgen_config (not written by vidgen.train)", key)
    if not (folder / _SHARDED_INDEX_FILE).is_file():
        raise invalid_checkpoint(
            folder, f"no {_SHARDED_INDEX_FILE} next to the shards: the save did not finish", key
        )


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Load a vidgen checkpoint safely (``weights_only=True``), failing clearly on a missing/foreign file.

    ``path`` is a ``.ckpt`` file, or the folder of a sharded checkpoint written under FSDP (one
    ``__<rank>_0.distcp`` shard per rank and ``meta.pt``): its model weights are consolidated in this
    process, without a process group (the optimizer state is not read).

    Raises:
        ConfigError: ``key``: the file does not exist, or is :data:`INVALID_CHECKPOINT` (empty, truncated,
            corrupt, or a torch file without the entries of a vidgen checkpoint), naming the file.
    """
    path = Path(path)
    if path.is_dir():
        checkpoint = _read_sharded_checkpoint(path, key)
    elif path.is_file():
        checkpoint = _load_file(path, key)
    else:
        raise ConfigError(key, f"checkpoint '{path}' does not exist")
    check_checkpoint_content(checkpoint, path, key)
    return checkpoint


def _read_sharded_checkpoint(folder: Path, key: str = "ckpt_path") -> dict[str, Any]:
    """Metadata + full model ``state_dict`` of a distributed (DCP) checkpoint folder, in one process."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    _check_sharded_folder(folder, key)
    checkpoint = _load_file(folder / SHARDED_METADATA_FILE, key)
    reader = dcp.FileSystemReader(str(folder))
    prefix = "state_dict."
    state: dict[str, torch.Tensor] = {}
    for key, item in reader.read_metadata().state_dict_metadata.items():
        if key.startswith(prefix) and isinstance(item, TensorStorageMetadata):
            state[key[len(prefix) :]] = torch.empty(item.size, dtype=item.properties.dtype)
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.filterwarnings("ignore", message=".*single process.*")
        try:
            dcp.load({"state_dict": state}, storage_reader=reader, no_dist=True)
        except Exception as error:  # a missing or cut shard
            raise invalid_checkpoint(
                folder, f"its shards cannot be read ({type(error).__name__})", key
            ) from error
    checkpoint["state_dict"] = state
    return checkpoint
