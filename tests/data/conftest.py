"""Fixtures for the data tests: a tiny UCF101-like folder tree written with ``write_mp4``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from vidgen.io.video import write_mp4, write_png

#: Frame ``k`` of every fake video is a uniform grey of this value, so a decoded clip reveals its frame indices.
GREY_STEP = 12
GREY_BASE = 8


def grey_frames(num_frames: int, height: int, width: int) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` frames, frame ``k`` uniformly ``GREY_BASE + GREY_STEP * k``."""
    values = GREY_BASE + GREY_STEP * torch.arange(num_frames, dtype=torch.int64)
    return values.view(-1, 1, 1, 1).expand(num_frames, height, width, 3).to(torch.uint8).contiguous()


def frame_ids(video: torch.Tensor) -> list[int]:
    """Recover frame indices from a ``(C, F, H, W)`` clip in [-1, 1] made of :func:`grey_frames`."""
    grey = (video.mean(dim=(0, 2, 3)) + 1.0) * 127.5
    return [round((float(g) - GREY_BASE) / GREY_STEP) for g in grey]


@pytest.fixture(autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Data tests work on tiny tensors: intra-op threads only add overhead (large on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ucf_tree(tmp_path: Path) -> Path:
    """``root/ClassA/{a1.mp4 (20 frames), a2.mp4 (6 frames)}``, ``root/ClassB/{b1.mp4 (20 frames),
    broken.mp4 (garbage), clip_frames/000.png..011.png (12 frames)}``; frames are 40x48 (H x W)."""
    root = tmp_path / "ucf"
    write_mp4(root / "ClassA" / "a1.mp4", grey_frames(20, 40, 48))
    write_mp4(root / "ClassA" / "a2.mp4", grey_frames(6, 40, 48))
    write_mp4(root / "ClassB" / "b1.mp4", grey_frames(20, 40, 48))
    (root / "ClassB" / "broken.mp4").write_bytes(b"\x00not a video\x00" * 64)
    frames = grey_frames(12, 40, 48)
    for k, frame in enumerate(frames):
        path = root / "ClassB" / "clip_frames" / f"{k:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_png(path, frame.permute(2, 0, 1))
    (root / "README.txt").write_text("not a video")
    return root
