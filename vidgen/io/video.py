"""Reading and writing videos and images.

Conventions: inside the package a clip is a float tensor ``(C, F, H, W)`` in ``[-1, 1]``; on disk and at
this module's boundary a video is uint8 ``(F, H, W, C)`` (RGB, ``C == 3``; one-channel clips are written
as grey). Encoding and decoding use PyAV (FFmpeg); images use Pillow (torchvision's image io is deprecated).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

__all__ = [
    "DECODE_THREAD_TYPE",
    "VideoReadError",
    "auto_scale",
    "count_frames",
    "frame_to_rgb",
    "image_size",
    "make_grid_video",
    "read_image",
    "read_video",
    "upscale_nearest",
    "video_shape",
    "video_to_uint8",
    "write_mp4",
    "write_png",
]


#: FFmpeg threading of the decoder: threads within a frame only. Frame threading ("AUTO" / "FRAME") keeps
#: frames in flight across threads, and stopping before the end of the file (every clip read does) can leave
#: the decoder waiting on them (PyAV issue 1849); DataLoader workers already decode in parallel.
DECODE_THREAD_TYPE = "SLICE"


class VideoReadError(RuntimeError):
    """A video file could not be opened or decoded. ``path`` is the offending file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read video '{path}': {reason}")


def video_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """Convert a float clip to uint8 frames.

    Args:
        video: ``(C, F, H, W)`` float in ``[-1, 1]``; values outside are clamped, NaNs become mid-grey.

    Returns:
        ``(F, H, W, C)`` uint8 with ``-1 -> 0`` and ``1 -> 255`` (rounded to nearest).
    """
    if video.dim() != 4:
        raise ValueError(f"expected a (C, F, H, W) clip, got shape {tuple(video.shape)}")
    pixels = torch.nan_to_num(video.detach().float().cpu(), nan=0.0)
    pixels = ((pixels + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).contiguous()


def _to_rgb_frames(video: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Accept float ``(C, F, H, W)`` in [-1, 1] or uint8 ``(F, H, W, C)``; return uint8 ``(F, H, W, 3)``."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if video.dim() != 4:
        raise ValueError(f"expected a 4-d video, got shape {tuple(video.shape)}")
    frames = video.cpu() if video.dtype == torch.uint8 else video_to_uint8(video)
    channels = frames.shape[-1]
    if channels == 1:
        frames = frames.expand(-1, -1, -1, 3)
    elif channels != 3:
        raise ValueError(
            f"expected 1 or 3 channels (uint8 videos are (F, H, W, C), float clips (C, F, H, W)), "
            f"got shape {tuple(video.shape)} with dtype {video.dtype}"
        )
    if frames.shape[0] == 0:
        raise ValueError("cannot write a video with zero frames")
    return frames.contiguous()


def upscale_nearest(frames: torch.Tensor, scale: int) -> torch.Tensor:
    """Nearest-neighbour upscale of ``(F, H, W, C)`` frames by an integer ``scale`` -> ``(F, sH, sW, C)``."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if scale == 1:
        return frames
    return frames.repeat_interleave(int(scale), dim=1).repeat_interleave(int(scale), dim=2)


def _pad_to_even(frames: torch.Tensor) -> torch.Tensor:
    """Repeat the last row / column of ``(F, H, W, C)`` frames so that H and W are even (yuv420p needs it)."""
    if frames.shape[1] % 2:
        frames = torch.cat([frames, frames[:, -1:]], dim=1)
    if frames.shape[2] % 2:
        frames = torch.cat([frames, frames[:, :, -1:]], dim=2)
    return frames


def auto_scale(h: int, w: int, min_side: int = 128) -> int:
    """Smallest integer upscale that makes the shorter side at least ``min_side`` pixels (at least 1).

    ``auto_scale(32, 32) == 4``: a 32x32 clip is written as 128x128 so it is watchable.
    """
    return max(1, math.ceil(min_side / max(1, min(h, w))))


def write_mp4(
    path: str | Path,
    video: torch.Tensor | np.ndarray,
    fps: float = 8,
    scale: int = 1,
    crf: int = 18,
) -> Path:
    """Encode a clip as H.264 (libx264, yuv420p) mp4.

    Args:
        path: output file; parent folders are created.
        video: float ``(C, F, H, W)`` in ``[-1, 1]`` or uint8 ``(F, H, W, C)``; ``C`` is 1 or 3.
        fps: frames per second.
        scale: integer nearest-neighbour upscale applied before encoding (see :func:`auto_scale`).
        crf: x264 constant rate factor (lower is better quality; 18 is visually near-lossless).

    Odd heights/widths are padded to even by repeating the last row/column. The encoder is flushed, so
    the file holds every frame.

    Returns:
        The path written.
    """
    path = Path(path)
    frames = _pad_to_even(upscale_nearest(_to_rgb_frames(video), scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.height = frames.shape[1]
        stream.width = frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for array in frames.numpy():
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):  # flush the delayed frames
            container.mux(packet)
    return path


def count_frames(path: str | Path) -> int:
    """Number of video frames in ``path``: the container's count when it stores one, else counted packets.

    Raises:
        VideoReadError: the file is missing, unreadable or has no video stream.
    """
    return video_shape(path)[0]


def video_shape(path: str | Path) -> tuple[int, int, int]:
    """``(frames, height, width)`` of the video in ``path`` from its headers (frames: the container's count
    when it stores one, else counted packets), without decoding a frame.

    Raises:
        VideoReadError: the file is missing, unreadable or has no video stream.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "file does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            size = int(stream.codec_context.height), int(stream.codec_context.width)
            if stream.frames > 0:
                return int(stream.frames), *size
            return sum(1 for packet in container.demux(stream) if packet.size > 0), *size
    except (av.error.FFmpegError, OSError) as error:
        raise VideoReadError(path, str(error)) from error


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header.

    Raises:
        VideoReadError: missing or unreadable file (the message names it).
    """
    try:
        with Image.open(path) as image:
            return int(image.height), int(image.width)
    except OSError as error:
        raise VideoReadError(path, f"cannot read image: {error}") from error


def frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """uint8 ``(H, W, 3)`` RGB pixels of a decoded frame, converted by FFmpeg's swscale on this thread.

    PyAV >= 17 gives each frame's converter its own pool of one thread per core (``threads=0``), kept while the
    frame lives. In a DataLoader worker forked from a training process that pool once waited forever for a
    thread that was not there (CI, 2026-12-07: the training stalled in ``sws_scale_frame``); one thread
    starts no pool, and on frames of clip size it is also faster (PyAV issue 2200).
    """
    return frame.to_ndarray(format="rgb24", threads=1)


def read_video(path: str | Path, frame_indices: Sequence[int] | None = None) -> torch.Tensor:
    """Decode frames of a video file.

    Args:
        path: a video file any FFmpeg demuxer reads (mp4, avi, mkv, webm, mov, ...).
        frame_indices: which frames to return, in this order (repeats allowed); ``None`` returns all.
            Decoding runs from the start and stops after the largest index. An index past the last frame
            gives the last frame (short videos are padded by repeating their last frame).

    Returns:
        uint8 ``(F, H, W, 3)`` RGB frames, ``F == len(frame_indices)`` when indices are given.

    Raises:
        VideoReadError: missing, unreadable or corrupt file, or no decodable frame; the message names
            the file.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "file does not exist")
    if frame_indices is not None:
        frame_indices = [int(i) for i in frame_indices]
        if any(i < 0 for i in frame_indices):
            raise ValueError(f"frame indices must be >= 0, got {frame_indices}")
        if not frame_indices:
            raise ValueError("frame_indices is empty")
    wanted = None if frame_indices is None else set(frame_indices)
    last_wanted = None if frame_indices is None else max(frame_indices)
    decoded: dict[int, np.ndarray] = {}
    last_frame = None
    last_index = -1
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = DECODE_THREAD_TYPE
            for index, frame in enumerate(container.decode(stream)):
                last_frame, last_index = frame, index
                if wanted is None or index in wanted:
                    decoded[index] = frame_to_rgb(frame)
                if last_wanted is not None and index >= last_wanted:
                    break
    except (av.error.FFmpegError, OSError) as error:
        raise VideoReadError(path, str(error)) from error
    if last_frame is None:
        raise VideoReadError(path, "no decodable video frame")
    if frame_indices is None:
        frame_indices = list(range(last_index + 1))
    elif last_index not in decoded:
        decoded[last_index] = frame_to_rgb(last_frame)
    arrays = [decoded[min(i, last_index)] for i in frame_indices]
    return torch.from_numpy(np.stack(arrays))


def make_grid_video(
    videos: torch.Tensor | Sequence[torch.Tensor],
    nrow: int | None = None,
    padding: int = 2,
    pad_value: float = -1.0,
) -> torch.Tensor:
    """Tile clips into one clip, like ``torchvision.utils.make_grid`` applied to every frame.

    Args:
        videos: ``(N, C, F, H, W)`` (or a sequence of ``(C, F, H, W)``), any dtype.
        nrow: clips per grid row; default ``ceil(sqrt(N))``.
        padding: pixels between clips and around the border.
        pad_value: value of the padding pixels (``-1`` is black for [-1, 1] clips).

    Returns:
        ``(C, F, rows * (H + padding) + padding, cols * (W + padding) + padding)`` where
        ``cols = min(nrow, N)`` and ``rows = ceil(N / cols)``.
    """
    if not isinstance(videos, torch.Tensor):
        videos = torch.stack(list(videos))
    if videos.dim() != 5 or videos.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, F, H, W) tensor, got shape {tuple(videos.shape)}")
    n, c, f, h, w = videos.shape
    cols = min(nrow if nrow is not None else math.ceil(math.sqrt(n)), n)
    if cols < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    rows = math.ceil(n / cols)
    grid = videos.new_full((c, f, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in range(n):
        top = padding + (k // cols) * (h + padding)
        left = padding + (k % cols) * (w + padding)
        grid[:, :, top : top + h, left : left + w] = videos[k]
    return grid


def write_png(path: str | Path, image: torch.Tensor, scale: int = 1) -> Path:
    """Write an image as PNG (parent folders are created).

    Args:
        path: output file.
        image: float ``(C, H, W)`` in ``[-1, 1]`` or uint8 ``(C, H, W)``; ``C`` is 1 or 3.
        scale: integer nearest-neighbour upscale.

    Returns:
        The path written.
    """
    path = Path(path)
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected a (C, H, W) image with C in (1, 3), got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        pixels = image.cpu()
    else:
        pixels = video_to_uint8(image.unsqueeze(1))[0].permute(2, 0, 1)
    array = upscale_nearest(pixels.permute(1, 2, 0).unsqueeze(0), scale)[0].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, format="PNG")
    return path


def read_image(path: str | Path) -> torch.Tensor:
    """Decode an image file (png, jpg, ...) to uint8 ``(H, W, 3)`` RGB.

    Raises:
        VideoReadError: missing or undecodable file (the message names it).
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as error:  # includes PIL.UnidentifiedImageError and truncated files
        raise VideoReadError(path, f"cannot decode image: {error}") from error
    return torch.from_numpy(array.copy())
