"""Conditional generation end to end on tiny CPU models: temporal extension (reconstruction guidance and
replacement), interpolation / prediction from a video's frames and spatial super-resolution, through
``vidgen.sample`` and :mod:`vidgen.lit.conditional_sampling`, for Latte (discrete and continuous-time
diffusion) and the Latent-Shift U-Net; every new key fails with a ConfigError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, TINY_RUN, compose_config
from vidgen.config.errors import ConfigError
from vidgen.diffusion import VDMDiffusion, make_downsampler
from vidgen.io.video import read_video, write_mp4
from vidgen.lit.build import build_module, load_module_from_checkpoint
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.conditional_sampling import condition_on_frames, extend_videos, super_resolve
from vidgen.lit.training import train

#: 2 training steps, no validation samples: a checkpoint in a few seconds
QUICK = [
    *TINY,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "callbacks.model_checkpoint.every_n_train_steps=2",
    "samples.num_videos=0",
    "samples.final_num_videos=0",
    "logger=csv",
]
#: a fast guided sampler (the tiny clips have 4 frames of 16x16)
SAMPLER = ["sampler=vdm_ancestral", "sampler.steps=4", "num_videos=1"]
ANCESTRAL = {"name": "vdm_ancestral", "steps": 4, "gamma": 0.1}


@pytest.fixture(scope="module")
def latte_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Latte (DiT diffusion: learned variance, discrete chain) trained 2 steps."""
    run_dir = tmp_path_factory.mktemp("latte") / "run"
    train(compose_config(QUICK, run_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def run_sample(ckpt: Path, out: Path, *overrides: str) -> list[Path]:
    return sample(
        compose_config([f"ckpt_path={ckpt}", *SAMPLER, *overrides], run_dir=out, config_name="sample")
    )


def clip_file(path: Path, frames: torch.Tensor) -> Path:
    """Write ``(3, F, H, W)`` frames in [-1, 1] as an mp4."""
    return write_mp4(path, frames, fps=8)


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("method", ["reconstruction", "replacement"])
def test_extend_to_four_clip_lengths_writes_decodable_videos(
    latte_ckpt: Path, tmp_path: Path, method: str
) -> None:
    written = run_sample(latte_ckpt, tmp_path, "extend.num_frames=16", f"extend.method={method}")
    assert [p.name for p in written] == ["sample_000.mp4", "grid.mp4"]
    for path in written:
        frames = read_video(path)
        assert frames.shape[0] == 16 and frames.dtype == torch.uint8


def test_vdm_ancestral_samples_a_discrete_checkpoint(latte_ckpt: Path, tmp_path: Path) -> None:
    """sampler=vdm_ancestral (with the corrector) on a checkpoint trained with the DiT chain and a learned
    variance: plain sampling at the model's clip length."""
    written = run_sample(latte_ckpt, tmp_path, "sampler.langevin_steps_per_step=1", "upscale=1")
    assert read_video(written[0]).shape[:3] == (4, 16, 16)


def test_interpolation_and_superresolution_from_videos(latte_ckpt: Path, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    given = clip_file(tmp_path / "given.mp4", torch.rand(3, 2, 32, 40, generator=generator) * 2 - 1)
    written = run_sample(latte_ckpt, tmp_path / "interp", f"condition_video={given}", "condition.stride=2")
    assert read_video(written[0]).shape[:3] == (4, 128, 128)  # 16x16 frames upscaled 8x for viewing
    written = run_sample(
        latte_ckpt, tmp_path / "predict", f"condition_video={given}", "condition.frames=[0,1]"
    )
    assert read_video(written[0]).shape[0] == 4
    small = clip_file(tmp_path / "small.mp4", torch.rand(3, 4, 8, 8, generator=generator) * 2 - 1)
    written = run_sample(latte_ckpt, tmp_path / "sr", f"superres.video={small}", "upscale=1")
    assert read_video(written[0]).shape[:3] == (4, 16, 16)


@pytest.mark.parametrize(
    ("overrides", "key", "needle"),
    [
        (
            ["extend.num_frames=16", "extend.context_frames=4"],
            "extend.context_frames",
            "clip length (4 frames)",
        ),
        (["extend.num_frames=4"], "extend.num_frames", "more than the model's clip length"),
        (["extend.num_frames=16", "extend.method=inpaint"], "extend.method", "reconstruction, replacement"),
        (["extend.num_frames=16", "extend.weight=-1"], "extend.weight", ">= 0"),
        (["extend.num_frames=16", "sampler=dpmsolver"], "sampler.name", "cannot sample with guidance"),
        (["condition_video=MISSING", "condition.frames=[0]"], "condition_video", "does not exist"),
        (["condition_video=GIVEN", "condition.frames=[0,1,2]"], "condition_video", "has 2 frames"),
        (["condition_video=GIVEN", "condition.frames=[0,5]"], "condition.frames", "outside the model's clip"),
        (["condition_video=GIVEN"], "condition.frames", "condition.stride=k"),
        (["condition.stride=2"], "condition.stride", "condition_video"),
        (["extend.num_frames=16", "superres.video=GIVEN"], "superres.video", "one conditional task"),
        (["superres.video=GIVEN", "superres.downsampler=nearest"], "superres.downsampler", "area, bilinear"),
        (["superres.video=GIVEN"], "superres.video", "this task needs at least 4"),
    ],
)
def test_every_new_key_fails_with_its_name(
    latte_ckpt: Path, tmp_path: Path, overrides: list[str], key: str, needle: str
) -> None:
    given = clip_file(tmp_path / "given.mp4", torch.zeros(3, 2, 16, 16))
    overrides = [
        o.replace("GIVEN", str(given)).replace("MISSING", str(tmp_path / "none.mp4")) for o in overrides
    ]
    with pytest.raises(ConfigError) as info:
        run_sample(latte_ckpt, tmp_path / "out", *overrides)
    assert info.value.key == key, str(info.value)
    assert needle in str(info.value)
    assert not list((tmp_path / "out").glob("*.mp4"))


# ---------------------------------------------------------------------------------------------- library


def test_extension_shares_the_first_block_and_weight_zero_is_replacement(latte_ckpt: Path) -> None:
    """Both methods draw the first block identically (spec §5); reconstruction guidance with w_r = 0 on the
    real Latte gives the replacement samples bit for bit; the output is reproducible from the seed."""
    module, _ = load_module_from_checkpoint(latte_ckpt)

    def run(method: str, weight: float) -> torch.Tensor:
        return extend_videos(
            module,
            2,
            7,
            sampler_cfg=ANCESTRAL,
            context_frames=1,
            method=method,
            weight=weight,
            generator=torch.Generator().manual_seed(3),
        )

    guided, replaced = run("reconstruction", 2.0), run("replacement", 0.0)
    assert guided.shape == replaced.shape == (2, 3, 7, 16, 16)  # 4 + one window of 3 new frames
    assert torch.equal(guided[:, :, :4], replaced[:, :, :4])
    assert not torch.equal(guided[:, :, 4:], replaced[:, :, 4:])
    assert torch.equal(run("reconstruction", 0.0), replaced)
    assert torch.equal(run("reconstruction", 2.0), guided)


def test_given_frames_come_back_and_superresolution_follows_the_low_resolution_clip(latte_ckpt: Path) -> None:
    """Pixel-space model: the given frames are the output's frames at their positions exactly; the guided
    super-resolution's D(x) is much nearer the low-resolution target than the unguided sample's (w_r = 0)."""
    module, _ = load_module_from_checkpoint(latte_ckpt)
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(3, 2, 16, 16, generator=generator) * 2 - 1
    out = condition_on_frames(
        module, 2, frames, [1, 3], sampler_cfg=ANCESTRAL, generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == (2, 3, 4, 16, 16)
    assert torch.equal(out[:, :, [1, 3]], frames[None].expand(2, -1, -1, -1, -1))

    lowres = torch.rand(3, 4, 8, 8, generator=generator) * 2 - 1
    downsample = make_downsampler("area", (8, 8))
    errors = {}
    for weight in (0.0, 2.0):
        out = super_resolve(
            module,
            2,
            lowres,
            sampler_cfg=ANCESTRAL,
            weight=weight,
            generator=torch.Generator().manual_seed(0),
        )
        errors[weight] = (downsample(out) - lowres[None]).square().mean().item()
    assert errors[2.0] < 0.3 * errors[0.0], errors  # 4 steps: 0.077 vs 0.387


def test_continuous_time_latte_trains_and_extends(tmp_path: Path) -> None:
    """diffusion=vdm end to end: the module trains on t ~ U[0, 1] with the denoiser fed lambda_t, samples with
    vdm_ancestral (+ Langevin) and extends."""
    run_dir = tmp_path / "run"
    summary = train(compose_config([*QUICK, "diffusion=vdm", "sampler=vdm_ancestral"], run_dir=run_dir))
    assert summary["global_step"] == 2
    module, cfg = load_module_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert isinstance(module.diffusion, VDMDiffusion) and cfg.model.learn_sigma is False
    seen = []
    module.sampling_denoiser.register_forward_pre_hook(lambda _, args: seen.append(args[1]))
    videos = module.generate(
        1,
        sampler={"name": "vdm_ancestral", "steps": 3, "langevin_steps_per_step": 1},
        generator=torch.Generator(),
    )
    assert videos.shape == (1, 3, 4, 16, 16) and bool(torch.isfinite(videos).all())
    assert len(seen) == 3 + 2 and all(t.is_floating_point() for t in seen)  # 3 steps + 2 corrector steps
    assert seen[0][0].item() == pytest.approx(-20.0)  # t = 1: lambda = -20
    written = run_sample(run_dir / "checkpoints" / "last.ckpt", tmp_path / "out", "extend.num_frames=10")
    assert read_video(written[0]).shape[0] == 10


@pytest.mark.slow
def test_latent_shift_unet_extends(tmp_path: Path) -> None:
    """The U-Net family (any frame count, eps on SD's schedule) extends the same way, untrained (slow: about
    2 s per guided U-Net pass on a busy CPU)."""
    overrides = [
        "model=latent_shift",
        "diffusion=sd",
        "diffusion.prediction=eps",
        "data.num_frames=4",
        "data.resolution=16",
        "data.batch_size=2",
        "data.val_clips=2",
        *TINY_RUN,
    ]
    module = build_module(compose_config(overrides, run_dir=tmp_path)).eval()
    videos = extend_videos(
        module,
        1,
        8,
        sampler_cfg={"name": "ddim", "steps": 3},
        context_frames=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert videos.shape == (1, 3, 8, 16, 16) and bool(torch.isfinite(videos).all())
