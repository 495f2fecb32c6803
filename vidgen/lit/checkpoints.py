"""Finding the checkpoint a training run resumes from (``ckpt_path``)."""

from __future__ import annotations

from pathlib import Path

from vidgen.config.errors import ConfigError

__all__ = ["resolve_ckpt_path"]


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
