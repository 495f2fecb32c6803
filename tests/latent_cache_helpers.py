"""Helpers of tests/test_latent_cache.py that litdata's spawned precompute workers import: a tiny SD-layout VAE
and a :class:`CacheEncoder` that logs the clips it encodes and can fail once at a chosen clip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vidgen.data.latent_cache import CacheEncoder

#: classes of the synthetic data (3 shapes x 7 motions)
NUM_CLASSES = 21
#: the run settings the cache tests share after their model / autoencoder / data overrides: class-conditional,
#: CSV logs, a validation every 2 steps, no sample videos
CACHE_RUN = [
    "conditioner=class",
    f"conditioner.num_classes={NUM_CLASSES}",
    "logger=csv",
    "trainer.val_check_interval=2",
    "samples.num_videos=0",
    "samples.final_num_videos=0",
]


def write_tiny_vae(folder: Path, num_blocks: int = 2, sample_size: int = 16) -> Path:
    """A diffusers ``AutoencoderKL`` in the real on-disk format (config.json + safetensors): ``num_blocks``
    blocks (``2 ** (num_blocks - 1)`` x downsampling; 4 blocks is SD's layout), 4 latent channels, widths 8."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * num_blocks,
        up_block_types=("UpDecoderBlock2D",) * num_blocks,
        block_out_channels=(8,) * num_blocks,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=sample_size,
    ).save_pretrained(folder)
    return folder


#: environment of the workers: the folder the encoded clip indices are logged in, and the clip that fails
#: while the marker file ``<log>/fail`` exists (removed by the failing worker, so a rerun passes)
LOG_ENV, FAIL_AT_ENV = "VIDGEN_TEST_ENCODE_LOG", "VIDGEN_TEST_FAIL_AT"


class LoggingEncoder(CacheEncoder):
    """Writes every encoded index into ``$VIDGEN_TEST_ENCODE_LOG/<pid>``; fails at ``$VIDGEN_TEST_FAIL_AT``
    while ``<log>/fail`` exists (an interrupted precompute)."""

    def __call__(self, index: int) -> dict[str, Any]:
        log = Path(os.environ[LOG_ENV])
        marker = log / "fail"
        if marker.exists() and int(index) == int(os.environ.get(FAIL_AT_ENV, -1)):
            marker.unlink()
            raise RuntimeError(f"interrupted at clip {index}")
        with open(log / str(os.getpid()), "a") as handle:
            handle.write(f"{int(index)}\n")
        return super().__call__(index)


def logged_indices(log: Path) -> list[int]:
    """Every index the workers logged (all files of ``log`` but the marker)."""
    return sorted(
        int(line) for path in log.iterdir() if path.name != "fail" for line in path.read_text().split()
    )
