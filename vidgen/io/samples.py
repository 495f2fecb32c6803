"""Writing generated samples to a folder: one file per sample plus a grid of all of them.

Clips are written as .mp4 videos; one-frame samples (``F == 1``, e.g. text-to-image from a video model) are
written as .png images. Used by ``vidgen.sample`` and by the sample writing of training (validation samples
under ``samples/step_*/`` and the final ones under ``samples/final/``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vidgen.io.video import make_grid_video, write_mp4, write_png

__all__ = ["GRID_STEM", "sample_suffix", "write_samples"]

#: file stem of the grid of all samples (``grid.mp4`` / ``grid.png``)
GRID_STEM = "grid"


def sample_suffix(num_frames: int) -> str:
    """File suffix of a sample with ``num_frames`` frames: ``.png`` for one frame, else ``.mp4``."""
    if num_frames < 1:
        raise ValueError(f"a sample needs at least one frame, got {num_frames}")
    return ".png" if num_frames == 1 else ".mp4"


def write_samples(folder: str | Path, videos: torch.Tensor, fps: int = 8, scale: int = 1) -> list[Path]:
    """Write ``sample_000<suffix>``, ``sample_001<suffix>``, ... and ``grid<suffix>`` into ``folder``.

    Args:
        folder: output folder (created).
        videos: ``(N, C, F, H, W)`` float in ``[-1, 1]``; ``C`` is 1 or 3. ``F == 1`` writes PNG images
            (``(C, H, W)`` each, the grid tiled like :func:`~vidgen.io.video.make_grid_video`), else mp4.
        fps: frames per second of the videos (not used for images).
        scale: integer nearest-neighbour upscale of every file.

    Returns:
        The ``N`` sample files in order, then the grid.
    """
    if videos.dim() != 5 or videos.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, F, H, W) tensor, got shape {tuple(videos.shape)}")
    folder = Path(folder)
    suffix = sample_suffix(int(videos.shape[2]))
    grid = make_grid_video(videos)  # (C, F, H', W')
    items = [*((f"sample_{i:03d}", video) for i, video in enumerate(videos)), (GRID_STEM, grid)]
    written = []
    for stem, clip in items:
        path = folder / f"{stem}{suffix}"
        if suffix == ".png":
            written.append(write_png(path, clip[:, 0], scale=scale))
        else:
            written.append(write_mp4(path, clip, fps=fps, scale=scale))
    return written
