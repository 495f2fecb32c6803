"""File input/output: videos (mp4 via PyAV), frame grids, PNG images and folders of generated samples.

uint8 ``(F, H, W, C)`` arrays exist only at this boundary; everything inside the package works on float
``(C, F, H, W)`` clips in ``[-1, 1]``.
"""

from vidgen.io.samples import sample_suffix, write_samples
from vidgen.io.video import (
    VideoReadError,
    auto_scale,
    count_frames,
    make_grid_video,
    read_image,
    read_video,
    upscale_nearest,
    video_to_uint8,
    write_mp4,
    write_png,
)

__all__ = [
    "VideoReadError",
    "auto_scale",
    "count_frames",
    "make_grid_video",
    "read_image",
    "read_video",
    "sample_suffix",
    "upscale_nearest",
    "video_to_uint8",
    "write_mp4",
    "write_png",
    "write_samples",
]
