"""vidgen.io.video: uint8 conversion, mp4 round trips, errors, grids and PNG; vidgen.io.samples: folders of
generated samples (mp4 clips, PNG images for one-frame samples)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.io.samples import sample_suffix, write_samples
from vidgen.io.video import (
    DECODE_THREAD_TYPE,
    VideoReadError,
    auto_scale,
    count_frames,
    frame_to_rgb,
    make_grid_video,
    read_image,
    read_video,
    video_to_uint8,
    write_mp4,
    write_png,
)


def test_video_to_uint8_maps_range_and_layout() -> None:
    video = torch.tensor([-1.0, 0.0, 1.0, 2.0, -3.0]).view(1, 5, 1, 1).expand(3, 5, 2, 4)
    frames = video_to_uint8(video)
    assert frames.shape == (5, 2, 4, 3) and frames.dtype == torch.uint8
    assert frames[:, 0, 0, 0].tolist() == [0, 128, 255, 255, 0]


def test_mp4_round_trip(tmp_path: Path) -> None:
    clip = SyntheticVideoDataset(num_clips=1, num_frames=8, resolution=32)[0]["video"]
    path = write_mp4(tmp_path / "nested" / "dir" / "clip.mp4", clip, fps=8)
    assert path.is_file()
    assert count_frames(path) == 8
    frames = read_video(path)
    assert frames.shape == (8, 32, 32, 3) and frames.dtype == torch.uint8
    error = (frames.float() - video_to_uint8(clip).float()).abs().mean()
    assert error < 4.0  # lossy yuv420p, but close


def test_mp4_upscale_and_odd_sizes(tmp_path: Path) -> None:
    clip = SyntheticVideoDataset(num_clips=1, num_frames=5, resolution=32)[0]["video"]
    frames = read_video(write_mp4(tmp_path / "big.mp4", clip, scale=auto_scale(32, 32)))
    assert frames.shape == (5, 128, 128, 3)
    error = (frames[:, 1::4, 1::4].float() - video_to_uint8(clip).float()).abs().mean()
    assert error < 2.0
    odd = torch.rand(3, 3, 15, 21) * 2 - 1
    assert read_video(write_mp4(tmp_path / "odd.mp4", odd)).shape == (3, 16, 22, 3)


def test_mp4_accepts_uint8_and_grey(tmp_path: Path) -> None:
    frames = torch.full((4, 16, 16, 3), 200, dtype=torch.uint8)
    back = read_video(write_mp4(tmp_path / "u8.mp4", frames))
    assert (back.float() - 200).abs().max() <= 3
    grey = torch.zeros(1, 4, 16, 16)
    back = read_video(write_mp4(tmp_path / "grey.mp4", grey))
    assert back.shape == (4, 16, 16, 3)
    assert (back.float() - 128).abs().max() <= 3
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "bad.mp4", torch.zeros(2, 4, 16, 16))


def test_read_selected_frames(tmp_path: Path) -> None:
    values = torch.arange(10, dtype=torch.uint8) * 20 + 10
    frames = values.view(10, 1, 1, 1).expand(10, 16, 16, 3).contiguous()
    path = write_mp4(tmp_path / "ramp.mp4", frames)
    picked = read_video(path, [7, 2, 2, 30])  # 30 is past the end: the last frame
    means = picked.float().mean(dim=(1, 2, 3))
    assert torch.allclose(means, torch.tensor([150.0, 50.0, 50.0, 190.0]), atol=3)


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_decoding_starts_no_thread_pool_per_frame(tmp_path: Path) -> None:
    """vidgen's decoder settings and RGB conversion start no thread pools that live on with the frames.

    PyAV's default conversion (``threads=0``) gives each frame a pool of one thread per core; in a forked
    DataLoader worker such a pool once waited forever (the CI hang of 2026-12-07). Eight decoded frames
    held at once must not add a thread each; the default conversion would add 8 pools."""
    clip = SyntheticVideoDataset(num_clips=1, num_frames=12, resolution=32)[0]["video"]
    path = write_mp4(tmp_path / "clip.mp4", clip, fps=8)
    before = _os_threads()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = DECODE_THREAD_TYPE
        held = []
        for index, frame in enumerate(container.decode(stream)):
            held.append((frame, frame_to_rgb(frame)))
            if index == 7:
                break
        during = _os_threads()
    assert during - before <= 2, (before, during)  # at most the decoder's own slice threads
    assert [rgb.shape for _, rgb in held] == [(32, 32, 3)] * 8
    frames = read_video(path, [0, 3, 7])
    assert torch.equal(frames, torch.from_numpy(np.stack([held[i][1] for i in (0, 3, 7)])))
    del held
    assert _os_threads() <= before + 2


def test_unreadable_files_raise_errors_naming_them(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x01garbage" * 50)
    with pytest.raises(VideoReadError, match=r"corrupt\.mp4") as info:
        read_video(corrupt)
    assert info.value.path == corrupt
    truncated = tmp_path / "truncated.mp4"
    good = write_mp4(tmp_path / "good.mp4", torch.zeros(3, 4, 16, 16)).read_bytes()
    truncated.write_bytes(good[: len(good) // 3])
    with pytest.raises(VideoReadError, match=r"truncated\.mp4"):
        read_video(truncated)
    with pytest.raises(VideoReadError, match=r"missing\.mp4"):
        read_video(tmp_path / "missing.mp4")
    with pytest.raises(VideoReadError, match=r"corrupt\.mp4"):
        count_frames(corrupt)


def test_grid_layout() -> None:
    videos = torch.randn(5, 3, 4, 8, 10)
    grid = make_grid_video(videos, nrow=3, padding=2, pad_value=-1)
    assert grid.shape == (3, 4, 2 * (8 + 2) + 2, 3 * (10 + 2) + 2)
    assert torch.equal(grid[:, :, 2:10, 2:12], videos[0])
    assert torch.equal(grid[:, :, 2:10, 14:24], videos[1])
    assert torch.equal(grid[:, :, 12:20, 2:12], videos[3])
    assert (grid[:, :, 0:2] == -1).all() and (grid[:, :, 12:20, 26:36] == -1).all()  # border, empty cell
    square = make_grid_video(torch.zeros(4, 1, 2, 6, 6), padding=0)
    assert square.shape == (1, 2, 12, 12)  # default nrow = ceil(sqrt(4)) = 2
    assert make_grid_video(torch.zeros(2, 3, 1, 6, 6), nrow=8, padding=1).shape == (3, 1, 8, 15)


def test_write_png(tmp_path: Path) -> None:
    image = torch.linspace(-1, 1, 3 * 6 * 8).view(3, 6, 8)
    path = write_png(tmp_path / "a" / "img.png", image, scale=2)
    back = read_image(path).permute(2, 0, 1)
    assert back.shape == (3, 12, 16)
    expected = video_to_uint8(image.unsqueeze(1))[0].permute(2, 0, 1)
    assert torch.equal(back[:, ::2, ::2], expected)


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match=r"bad\.png"):
        read_image(bad)
    grey = write_png(tmp_path / "grey.png", torch.zeros(1, 4, 5))
    assert read_image(grey).shape == (4, 5, 3)


def test_write_samples_images_for_one_frame_else_videos(tmp_path: Path) -> None:
    images = torch.linspace(-1, 1, 2 * 3 * 6 * 8).view(2, 3, 1, 6, 8)  # (N, C, F=1, H, W)
    written = write_samples(tmp_path / "images", images, scale=2)
    assert [p.name for p in written] == ["sample_000.png", "sample_001.png", "grid.png"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(p.name for p in written)
    expected = video_to_uint8(images[1])[0]  # (H, W, C)
    assert torch.equal(read_image(written[1])[::2, ::2], expected)
    grid = read_image(written[2])
    assert grid.shape == (2 * (2 + 6 + 2), 2 * (2 + 8 + 2 + 8 + 2), 3)  # side by side, 2 px padding, upscaled
    assert torch.equal(grid[4:16:2, 4:20:2], video_to_uint8(images[0])[0])

    clips = SyntheticVideoDataset(num_clips=1, num_frames=3, resolution=8)[0]["video"].expand(
        2, -1, -1, -1, -1
    )
    written = write_samples(tmp_path / "videos", clips, fps=4)
    assert [p.name for p in written] == ["sample_000.mp4", "sample_001.mp4", "grid.mp4"]
    assert [count_frames(p) for p in written] == [3, 3, 3]
    assert read_video(written[2]).shape == (3, 2 + 8 + 2, 2 + 8 + 2 + 8 + 2, 3)

    assert (sample_suffix(1), sample_suffix(16)) == (".png", ".mp4")
    with pytest.raises(ValueError, match="at least one frame"):
        sample_suffix(0)
    with pytest.raises(ValueError, match="N, C, F, H, W"):
        write_samples(tmp_path / "bad", images[0])


def test_auto_scale() -> None:
    assert auto_scale(32, 32) == 4
    assert auto_scale(128, 256) == 1
    assert auto_scale(100, 200) == 2
    assert auto_scale(512, 512) == 1
