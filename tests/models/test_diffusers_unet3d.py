"""diffusers' UNet3DConditionModel as a vidgen denoiser (the benchmark peer of the VDM 3D U-Net)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_DATA, compose_config
from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.models.diffusers_unet3d import DiffusersUNet3D


def _model(**kwargs: object) -> DiffusersUNet3D:
    torch.manual_seed(0)
    return DiffusersUNet3D(**{"size": "tiny", "in_channels": 3, "input_size": 16, **kwargs}).eval()


def test_sizes_count_the_modelscope_unet_on_the_meta_device() -> None:
    with torch.device("meta"):
        modelscope = DiffusersUNet3D("modelscope", in_channels=4)
    assert modelscope.num_params() == 1_411_233_860  # ModelScope's text-to-video U-Net
    tiny = _model()
    # about the tiny VDM 3D U-Net's 777,891 (pixel space, 3 channels), for like-for-like benchmarks
    assert tiny.num_params() == 789_491 and tiny.unet.config.block_out_channels == (24, 48)
    wider = _model(block_out_channels=[32, 64])
    assert wider.num_params() == 1_328_323 and wider.unet.config.block_out_channels == (32, 64)
    with pytest.raises(ConfigError, match=r"model\.block_out_channels"):
        _model(block_out_channels=[30, 64])
    with pytest.raises(ConfigError, match=r"model\.size"):
        _model(size="XL")
    with pytest.raises(ConfigError, match=r"model\.num_classes"):
        _model(num_classes=101)
    with pytest.raises(ConfigError, match=r"model\.input_size"):
        _model(input_size=15)


def test_forward_keeps_the_layout_and_text_reaches_the_output() -> None:
    model = _model(learn_sigma=True)
    for block in model.unet.modules():  # the zero-initialised temporal convolutions and output: open them
        if isinstance(block, torch.nn.Conv3d | torch.nn.Conv2d) and torch.count_nonzero(block.weight) == 0:
            torch.nn.init.normal_(block.weight, std=0.05)
    x, t = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 700])
    with torch.no_grad():
        out = model(x, t)
        text = model(x, t, Cond(text=torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(2))))
        # frames interact (temporal convolutions and attention): frame 0's output depends on frame 3's input
        moved = x.clone()
        moved[:, :, 3] += 1.0
        other = model(moved, t)
    assert out.shape == (2, 6, 4, 16, 16)
    assert (text - out).abs().max() > 1e-4
    assert (other[:, :, 0] - out[:, :, 0]).abs().max() > 1e-6


def test_refuses_labels_and_joint_training_images() -> None:
    model = _model()
    x, t = torch.randn(1, 3, 4, 16, 16), torch.tensor([3])
    with pytest.raises(ValueError, match="class conditioning"):
        model(x, t, Cond(labels=torch.tensor([1])))
    with pytest.raises(ValueError, match="joint training"):
        model(x, t, Cond(num_video_frames=2))
    assert model(x, t, Cond(num_video_frames=4)).shape == x.shape


def test_the_model_config_builds_it_on_the_synthetic_recipe(tmp_path) -> None:
    cfg = compose_config(["model=diffusers_unet3d", "diffusion=vpred", *TINY_DATA], run_dir=tmp_path)
    model = instantiate_node(cfg.model)
    assert isinstance(model, DiffusersUNet3D) and model.unet.config.block_out_channels == (24, 48)
    assert model.out_channels == 3
