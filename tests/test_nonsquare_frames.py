"""Non-square frames (``data.resolution=[H, W]``): the value is checked naming the key, the latent sizes
follow it through the config, video folders are resized and centre-cropped to ``H x W`` with the aspect
kept, Latte's position table is laid out for the non-square grid, the paper's CMD text-to-video setting
(16 x 512 x 1024 on SD latents) composes and builds, and a tiny CMD run on a folder of non-square videos
trains both stages and samples ``H x W`` videos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_RUN, compose_config
from vidgen.benchmark.sampling_flops import build_counting_module
from vidgen.config.checks import checked_frame_size
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.data.video_folder import resize_center_crop
from vidgen.io.video import read_video, write_mp4
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.training import train
from vidgen.models.latte import Latte
from vidgen.nn import sincos_2d_table


@pytest.mark.parametrize(
    ("value", "expected"), [(16, (16, 16)), ([16, 32], (16, 32)), ((512, 1024), (512, 1024))]
)
def test_frame_size_is_one_side_or_a_height_width_pair(value: object, expected: tuple[int, int]) -> None:
    assert checked_frame_size("data.resolution", value) == expected


@pytest.mark.parametrize("value", [0, [16], [16, 32, 8], [16, 0], "16", [16.5, 32], True])
def test_bad_frame_sizes_fail_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.resolution"):
        checked_frame_size("data.resolution", value)


def test_resize_center_crop_keeps_the_aspect_and_crops_the_middle() -> None:
    # a 40 x 40 frame whose value is its column index: covering 16 x 32 needs a scale of 32/40 (32 x 32),
    # then the middle 16 rows are kept and every column survives
    columns = torch.arange(40, dtype=torch.float32).mul(6).to(torch.uint8)
    frames = columns.view(1, 1, 40, 1).expand(2, 40, 40, 3).contiguous()
    clip = resize_center_crop(frames, (16, 32))
    assert clip.shape == (3, 2, 16, 32)
    row = (clip[0, 0, 8] + 1) * 127.5  # values increase from the left edge to the right edge
    assert row[0] < 12 and row[-1] > 222 and torch.all(row[1:] >= row[:-1] - 1e-3)
    # a wide frame keeps its height and loses the same number of columns on each side
    wide = torch.arange(64, dtype=torch.float32).mul(3).to(torch.uint8).view(1, 1, 64, 1).expand(1, 16, 64, 3)
    middle = resize_center_crop(wide.contiguous(), (16, 32))
    expected = torch.arange(16, 48, dtype=torch.float32).mul(3).div(127.5).sub(1)
    torch.testing.assert_close(middle[0, 0, 0], expected)
    # one int is the square crop of before
    assert resize_center_crop(frames, 16).shape == (3, 2, 16, 16)


def test_latte_lays_out_its_position_table_for_the_non_square_grid() -> None:
    model = Latte(
        size="tiny",
        depth=2,
        hidden_size=16,
        num_heads=2,
        in_channels=2,
        input_size=[8, 16],
        learn_sigma=False,
    )
    assert model.grid_size == (4, 8) and model.pos_embed.shape == (32, 16)
    torch.testing.assert_close(model.pos_embed, sincos_2d_table(16, 4, 8))
    for parameter in model.parameters():  # zero-initialised output layers would hide a wrong layout
        torch.nn.init.normal_(parameter, std=0.05)
    out = model(torch.randn(2, 2, 4, 8, 16), torch.tensor([3, 7]))
    assert out.shape == (2, 2, 4, 8, 16)
    with pytest.raises(ConfigError, match=r"model\.input_size"):
        Latte(size="tiny", depth=1, hidden_size=16, num_heads=2, input_size=[8, 15])


def test_latent_sizes_follow_a_non_square_resolution_through_the_config(tmp_path: Path) -> None:
    overrides = ["model=latte_v1", "model.size=tiny", "data=webvid", "data.resolution=[64,128]"]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    validate_config(cfg)
    assert list(cfg.model.input_size) == [8, 16]  # the SD VAE's 8x downsampling of 64 x 128


def test_the_synthetic_generator_refuses_non_square_frames_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"data\.resolution.*square frames"):
        instantiate_node(compose_config(["data=synthetic", "data.resolution=[16,32]"]).data)


def test_the_papers_cmd_text_to_video_setting_composes_and_builds_at_512x1024(tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "model=cmd_sd",
            "data=webvid",
            "data.resolution=[512,1024]",
            "data.num_frames=16",
            "autoencoder=sd_vae",
            "conditioner=text",
            "diffusion=sd",
            "cmd.autoencoder_ckpt=untrained",
            "cmd.untrained_size=release",
            "task_name=bench",  # an untrained autoencoder is for shape checks and benchmarks
        ],
        run_dir=tmp_path / "run",
    )
    validate_config(cfg)
    module = build_counting_module(cfg)  # on the meta device; the SD VAE's architecture without weights
    assert module.video_shape == (3, 16, 512, 1024)
    assert module.cmd_autoencoder.latent_size == (32, 64)  # 64 x 128 SD latents, patch 2
    assert module.cmd_autoencoder.content_shape == (4, 64, 128)
    assert module.cmd_autoencoder.motion_shape(16) == (8, 16, 96)  # D x F x (H' + W')
    assert module.denoiser.content.input_size == (64, 128)


def _write_wide_videos(root: Path, count: int) -> None:
    """``count`` 8-frame 24 x 48 videos of a bright bar moving right on a dark background."""
    for index in range(count):
        frames = torch.full((8, 24, 48, 3), 20, dtype=torch.uint8)
        for t in range(8):
            left = (4 * t + 3 * index) % 40
            frames[t, 6:18, left : left + 8] = torch.tensor([220, 60 + 20 * index, 40], dtype=torch.uint8)
        write_mp4(root / f"clip_{index}.mp4", frames)


def test_cmd_trains_and_samples_non_square_videos_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "wide"
    _write_wide_videos(root, 6)
    data = [
        "data=skytimelapse",
        f"data.root={root}",
        "data.resolution=[16,32]",
        "data.num_frames=4",
        "data.frame_stride=1",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.val_fraction=0.34",
        "autoencoder=identity",
        "metrics=none",
        "recipe=synthetic",  # the tiny sizes
    ]
    run = [*TINY_RUN, "trainer.max_steps=3"]
    stage1_dir = tmp_path / "ae" / "run"
    summary = train(compose_config(["model=cmd_ae", *data, *run], run_dir=stage1_dir))
    assert summary["global_step"] == 3
    reconstruction = read_video(sorted((stage1_dir / "samples" / "final").glob("sample_*.mp4"))[0])
    height, width = reconstruction.shape[1:3]  # input | reconstruction, each 16 x 32, upscaled for viewing
    assert width == 4 * height and height % 16 == 0

    stage2_dir = tmp_path / "cmd" / "run"
    ae_ckpt = stage1_dir / "checkpoints" / "last.ckpt"
    summary = train(compose_config(["model=cmd", f"cmd.autoencoder_ckpt={ae_ckpt}", *data, *run], stage2_dir))
    assert summary["global_step"] == 3
    out = tmp_path / "samples"
    sample(
        compose_config(
            [
                f"ckpt_path={stage2_dir / 'checkpoints' / 'last.ckpt'}",
                f"out_dir={out}",
                "device=cpu",
                "upscale=1",
                "num_videos=2",
            ],
            config_name="sample",
        )
    )
    videos = sorted(out.glob("sample_*.mp4"))
    assert len(videos) == 2 and read_video(videos[0]).shape == (4, 16, 32, 3)


def test_models_laid_out_for_one_side_length_refuse_non_square_latents_naming_the_key() -> None:
    from vidgen.models.vdm_unet3d import VDMUNet3D

    with pytest.raises(ConfigError, match=r"model\.input_size: vdm_unet3d .*square frames"):
        VDMUNet3D(size="tiny", input_size=[16, 32])
    assert VDMUNet3D(size="tiny", input_size=[16, 16]).input_size == 16
