"""VDM's 3D U-Net end to end on the CPU through the real config (``model=vdm_unet3d``, the synthetic
recipe's tiny size): ``vidgen.train`` for a few steps (finite losses, checkpoint, sample videos), image-video
joint training with class labels, and ``vidgen.sample`` from the checkpoint at twice the training clip
length (the model has no per-frame table)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import CONFIG_DIR, TINY_DATA, TINY_RUN, compose_config
from vidgen.config.instantiate import instantiate_node
from vidgen.io.video import read_video
from vidgen.lit.build import build_module, read_checkpoint
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.seeding import step_generator
from vidgen.lit.training import train

VDM = ["model=vdm_unet3d", *TINY_DATA, *TINY_RUN, "logger=csv"]


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny unconditional VDM U-Net trained 6 steps by ``vidgen.train`` (4-frame 16x16 clips)."""
    run_dir = tmp_path_factory.mktemp("vdm") / "run"
    summary = train(compose_config(VDM, run_dir=run_dir))
    assert summary["global_step"] == 6 and not summary["interrupted"]
    return run_dir


def test_training_runs_with_finite_losses_and_samples_videos(run_dir: Path) -> None:
    losses = _losses(run_dir)
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["vidgen_config"]["model"]["size"] == "tiny"
    assert checkpoint["vidgen_num_denoiser_params"] == 777_891  # the recipe's fixed variance: 3 outputs
    assert any(k.startswith("ema_denoiser.") and ".temporal." in k for k in checkpoint["state_dict"])
    final = sorted((run_dir / "samples" / "final").glob("sample_*.mp4"))
    assert len(final) == 2
    frames = read_video(final[0])
    assert frames.shape[0] == 4 and frames.shape[-1] == 3 and frames.dtype == torch.uint8  # 4 frames


def test_sampling_twice_the_training_length(run_dir: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        [
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"out_dir={tmp_path}",
            "device=cpu",
            "upscale=1",
            "num_videos=1",
            "data.num_frames=8",
            "sampler=ddim",
            "sampler.steps=2",
        ],
        run_dir=tmp_path,
        config_name="sample",
    )
    written = sample(cfg)
    video = read_video(next(p for p in written if p.name == "sample_000.mp4"))
    assert video.shape == (8, 16, 16, 3)


def test_joint_image_video_training_with_class_labels(tmp_path: Path) -> None:
    """K = 2 appended images, each with its own label (the model conditions every frame on its own)."""
    run_dir = tmp_path / "run"
    overrides = [
        *VDM,
        "conditioner=class",
        "conditioner.num_classes=21",
        "data.joint_image_frames=2",
        "trainer.max_steps=2",
        "samples.num_videos=0",
        "samples.final_num_videos=0",
    ]
    summary = train(compose_config(overrides, run_dir=run_dir))
    assert summary["global_step"] == 2
    losses = _losses(run_dir)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


def test_the_training_loss_covers_the_clip_and_each_image_under_its_own_label(tmp_path: Path) -> None:
    """Spec T18 with this model: the denoiser is told the clip length and gets every image's own label
    (from the image's own clip), and the loss reaches the denoiser's output on every frame."""
    cfg = compose_config(
        [
            *VDM,
            "conditioner=class",
            "conditioner.num_classes=21",
            "conditioner.drop_prob=0",
            "data.joint_image_frames=2",
        ],
        run_dir=tmp_path / "run",
    )
    module = build_module(cfg)
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    frames = int(batch["num_video_frames"][0])
    seen, outputs = [], []
    forward = module.denoiser.forward

    def recording_forward(x: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        seen.append(cond)
        out = forward(x, t, cond)
        out.retain_grad()
        outputs.append(out)
        return out

    module.denoiser.forward = recording_forward
    losses = module._diffusion_losses(module.denoiser, batch, step_generator(0, 0, 0, 0), train=True)
    losses["loss"].mean().backward()
    (cond,) = seen
    assert cond.num_video_frames == frames and cond.images.labels.shape == (batch["video"].shape[0], 2)
    per_frame = outputs[0].grad.abs().sum(dim=(0, 1, 3, 4))  # (F + K,)
    assert per_frame.shape == (frames + 2,) and (per_frame > 0).all()
    grads = [p.grad for p in module.denoiser.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(
    not (Path(CONFIG_DIR) / "diffusion" / "vdm.yaml").is_file(), reason="no diffusion=vdm in this tree"
)
def test_training_under_vdm_continuous_diffusion_feeds_the_log_snr(tmp_path: Path) -> None:
    """Under ``diffusion=vdm`` the model gets the log-SNR (floats in [-20, 20]) and trains and samples
    with VDM's ancestral sampler."""
    overrides = [*VDM, "diffusion=vdm", "sampler=vdm_ancestral", "sampler.steps=3", "trainer.max_steps=3"]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    module = build_module(cfg)
    datamodule = instantiate_node(cfg.data)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    seen = []
    forward = module.denoiser.forward
    module.denoiser.forward = lambda x, t, cond: seen.append(t) or forward(x, t, cond)
    module._diffusion_losses(module.denoiser, batch, step_generator(0, 0, 0, 0), train=True)
    (t,) = seen
    assert t.is_floating_point() and t.min() >= -20 and t.max() <= 20 and not torch.equal(t, t.round())

    summary = train(compose_config(overrides, run_dir=tmp_path / "trained"))
    assert summary["global_step"] == 3
    assert all(math.isfinite(loss) for loss in _losses(tmp_path / "trained"))
    assert len(list((tmp_path / "trained" / "samples" / "final").glob("sample_*.mp4"))) == 2
