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


def test_appended_images_are_conditioned_on_their_own_clips_labels(tmp_path: Any) -> None:
    """Class-conditional joint training: the label the denoiser gets for every appended image is the label
    of the clip the image was taken from (the bug gave each image its clip's label: 250 of 256 wrong), with
    the images' own condition dropout; the clip keeps its own label."""
    cfg = compose_config(
        [
            *TINY,
            "data.joint_image_frames=4",
            "data.batch_size=16",
            "conditioner=class",
            "conditioner.num_classes=21",
            "conditioner.drop_prob=0",
        ],
        run_dir=tmp_path / "run",
    )
    module = build_module(cfg)
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    seen: list[Any] = []
    forward = module.denoiser.forward
    module.denoiser.forward = lambda x, t, cond: seen.append(cond) or forward(x, t, cond)
    module._diffusion_losses(module.denoiser, batch, step_generator(0, 0, 0, 0), train=True)
    (cond,) = seen
    dataset = datamodule.train_set
    sources = batch["image_sources"][..., 0]  # (B, K) source clip of every image
    expected = torch.tensor([[dataset.describe(int(s)).label for s in row] for row in sources])
    assert torch.equal(cond.images.labels, expected)
    assert torch.equal(cond.labels, batch["label"])
    assert (expected != batch["label"][:, None]).float().mean() > 0.5  # the clip's label would be wrong

    dropping = module.conditioner.__class__(module.conditioner.num_classes, drop_prob=0.5)
    dropped = dropping(batch, train=True, generator=torch.Generator().manual_seed(0))
    null = dropping.null_index
    image_drops = dropped.images.labels == null
    assert 0 < image_drops.sum() < image_drops.numel()  # each image its own draw
    assert torch.equal(dropped.images.labels[~image_drops], expected[~image_drops])
    assert not torch.equal(image_drops.any(dim=1), dropped.labels == null)  # not the clip's draw
