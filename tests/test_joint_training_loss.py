"""Image-video joint training in the LightningModule: the denoiser is told which frames are the clip, and
the diffusion loss covers every frame (clip and appended images)."""

from __future__ import annotations

from typing import Any

import torch

from tests.conftest import TINY, compose_config
from vidgen.config.instantiate import instantiate_node
from vidgen.lit.build import build_module
from vidgen.lit.seeding import step_generator


def _module_and_batch(tmp_path: Any, k: int) -> tuple[Any, dict[str, Any]]:
    cfg = compose_config([*TINY, f"data.joint_image_frames={k}"], run_dir=tmp_path / "run")
    torch.manual_seed(0)
    module = build_module(cfg)
    # a non-zero output layer, so the loss depends on the denoiser's output on every frame
    torch.nn.init.normal_(module.denoiser.final_layer.linear.weight, std=0.02)
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    return module, batch


def test_the_denoiser_gets_the_clip_length_and_the_loss_covers_image_frames(tmp_path: Any) -> None:
    module, batch = _module_and_batch(tmp_path, k=2)
    frames = int(batch["num_video_frames"][0])
    assert batch["video"].shape[2] == frames + 2
    seen: list[int | None] = []
    forward = module.denoiser.forward

    def recording_forward(x: torch.Tensor, t: torch.Tensor, cond: Any) -> torch.Tensor:
        seen.append(cond.num_video_frames)
        out = forward(x, t, cond)
        out.retain_grad()
        outputs.append(out)
        return out

    outputs: list[torch.Tensor] = []
    module.denoiser.forward = recording_forward
    losses = module._diffusion_losses(module.denoiser, batch, step_generator(0, 0, 0, 0), train=True)
    assert seen == [frames]
    losses["loss"].mean().backward()
    grad = outputs[0].grad  # (B, 2C, F+K, H, W): d loss / d denoiser output
    assert grad.shape[2] == frames + 2
    per_frame = grad.abs().flatten(3).sum(dim=(0, 1, 3))
    assert (per_frame[:frames] > 0).all(), "the loss ignores clip frames"
    assert (per_frame[frames:] > 0).all(), "the loss ignores the appended image frames"


def test_without_joint_training_batches_and_conditions_are_plain(tmp_path: Any) -> None:
    module, batch = _module_and_batch(tmp_path, k=0)
    assert "num_video_frames" not in batch and batch["video"].shape[2] == 4
    cond = module.conditioner(batch, train=True)
    assert cond.num_video_frames is None
