"""CMD end to end on the CPU through the real configs: stage 1 (``model=cmd_ae``) trains the autoencoder,
stage 2 (``model=cmd cmd.autoencoder_ckpt=...``) trains the content and motion models on its latents
(class-conditional, guided samples), ``vidgen.sample`` decodes a CMD sample to an .mp4 of the training
shape; and every way of pointing stage 2 at the wrong autoencoder fails naming ``cmd.autoencoder_ckpt``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_DATA, TINY_RUN, compose_config
from tests.latent_cache_helpers import write_tiny_vae
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.io.video import read_video
from vidgen.lit.build import build_module, load_module_from_checkpoint, read_checkpoint
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.seeding import step_generator
from vidgen.lit.training import train

STAGE1 = ["model=cmd_ae", *TINY_DATA, *TINY_RUN, "logger=csv"]
STAGE2_CONDITION = ["conditioner=class", "conditioner.num_classes=21", "guidance_scale=2.0"]


def _column(run_dir: Path, name: str) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return [float(row[name]) for row in csv.DictReader(handle) if row.get(name)]


def _stage2(ae_ckpt: Path | str, *extra: str) -> list[str]:
    return ["model=cmd", f"cmd.autoencoder_ckpt={ae_ckpt}", *STAGE2_CONDITION, *TINY_DATA, *TINY_RUN, *extra]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny pixel-space CMD autoencoder trained 6 steps on 4-frame 16x16 synthetic clips."""
    run_dir = tmp_path_factory.mktemp("cmd_ae") / "run"
    summary = train(compose_config(STAGE1, run_dir=run_dir))
    assert summary["global_step"] == 6 and not summary["interrupted"]
    return run_dir


@pytest.fixture(scope="module")
def cmd_run(ae_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stage 2 on ``ae_run``'s autoencoder: 6 steps, class-conditional, guided validation samples."""
    run_dir = tmp_path_factory.mktemp("cmd") / "run"
    overrides = _stage2(ae_run / "checkpoints" / "last.ckpt", "logger=csv")
    summary = train(compose_config(overrides, run_dir=run_dir))
    assert summary["global_step"] == 6 and not summary["interrupted"]
    return run_dir


def test_stage1_logs_reconstruction_quality_and_writes_input_beside_reconstruction(ae_run: Path) -> None:
    losses = _column(ae_run, "train/loss")
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    psnr = _column(ae_run, "val/psnr")
    assert psnr and all(0 < v < 100 for v in psnr)
    assert _column(ae_run, "val/motion_time_std")
    checkpoint = read_checkpoint(ae_run / "checkpoints" / "last.ckpt")
    assert checkpoint["cmd_autoencoder_arch"]["num_frames"] == 4
    assert all(k.startswith("network.") for k in checkpoint["state_dict"])  # the identity holds no weights
    final = sorted((ae_run / "samples" / "final").glob("sample_*.mp4"))
    assert len(final) == 2
    frames = read_video(final[0])  # (F, H, W, 3): input | reconstruction side by side
    assert frames.shape[0] == 4 and frames.shape[2] == 2 * frames.shape[1]


def test_stage2_trains_both_models_and_samples_guided_videos(cmd_run: Path) -> None:
    for name in ("train/loss", "train/content_loss", "train/motion_loss"):
        values = _column(cmd_run, name)
        assert len(values) == 6 and all(math.isfinite(v) for v in values), name
    total = _column(cmd_run, "train/loss")
    parts = zip(_column(cmd_run, "train/content_loss"), _column(cmd_run, "train/motion_loss"))
    assert all(abs(t - (c + m)) < 1e-4 * max(1.0, t) for t, (c, m) in zip(total, parts))
    checkpoint = read_checkpoint(cmd_run / "checkpoints" / "last.ckpt")
    keys = checkpoint["state_dict"]
    assert any(k.startswith("ema_denoiser.motion.") for k in keys)
    assert any(k.startswith("ema_denoiser.content.") for k in keys)
    assert not any(k.startswith("cmd_autoencoder.") for k in keys)  # frozen: read from cmd.autoencoder_ckpt
    final = sorted((cmd_run / "samples" / "final").glob("sample_*.mp4"))
    frames = read_video(final[0])  # (F, H, W, 3), upscaled for viewing
    assert len(final) == 2 and frames.shape[0] == 4 and frames.shape[1] == frames.shape[2]


def test_losses_give_the_content_model_the_content_frame_and_the_motion_model_the_motion_latent(
    cmd_run: Path,
) -> None:
    module, _ = load_module_from_checkpoint(cmd_run / "checkpoints" / "last.ckpt")
    seen: dict[str, tuple] = {}

    def spy(name: str, forward):
        def wrapped(x, t, cond):
            seen[name] = (x.shape, cond)
            return forward(x, t, cond)

        return wrapped

    denoisers = module.denoiser
    denoisers.content.forward = spy("content", denoisers.content.forward)
    denoisers.motion.forward = spy("motion", denoisers.motion.forward)
    video = torch.rand(3, 3, 4, 16, 16) * 2 - 1
    batch = {"video": video, "label": torch.tensor([0, 1, 2])}
    losses = module._diffusion_losses(denoisers, batch, step_generator(0, 0), train=False)
    assert set(losses) >= {"loss", "content_loss", "motion_loss"} and losses["loss"].shape == (3,)
    content, motion = module.cmd_autoencoder.encode(video)
    assert seen["content"][0] == (3, 3, 1, 16, 16)  # the content frame, as a one-frame video
    assert seen["motion"][0] == tuple(motion.shape) == (3, 8, 4, 16)  # D x F x (W' + H') at p=2
    torch.testing.assert_close(seen["motion"][1].content_frame, content)  # the clean content frame
    assert seen["content"][1].content_frame is None


def test_sample_cli_decodes_a_cmd_sample_to_an_mp4(cmd_run: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        [
            f"ckpt_path={cmd_run / 'checkpoints' / 'last.ckpt'}",
            f"out_dir={tmp_path}",
            "device=cpu",
            "upscale=1",
            "num_videos=2",
            "labels=[1,2]",
        ],
        config_name="sample",
    )
    sample(cfg)
    videos = sorted(tmp_path.glob("sample_*.mp4"))
    assert len(videos) == 2
    frames = read_video(videos[0])
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == torch.uint8


def test_extension_of_a_cmd_checkpoint_is_refused_clearly(cmd_run: Path) -> None:
    module, _ = load_module_from_checkpoint(cmd_run / "checkpoints" / "last.ckpt")
    with pytest.raises(NotImplementedError, match="not available for CMD"):
        module.sampling_model_fn(module.denoiser, module.conditioner.null(1), 1, 1.0)


def test_sampling_from_the_autoencoder_checkpoint_names_stage_2(ae_run: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        [f"ckpt_path={ae_run / 'checkpoints' / 'last.ckpt'}", f"out_dir={tmp_path}", "device=cpu"],
        config_name="sample",
    )
    with pytest.raises(ConfigError, match=r"ckpt_path.*model=cmd"):
        sample(cfg)


def test_stage2_without_an_autoencoder_fails_before_training_naming_the_key(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"^cmd\.autoencoder_ckpt: .*model=cmd_ae"):
        train(compose_config(["model=cmd", *TINY_DATA], run_dir=run))
    with pytest.raises(ConfigError, match=r"^cmd\.autoencoder_ckpt: .*does not exist"):
        train(compose_config(_stage2("/nowhere/last.ckpt"), run_dir=run))
    with pytest.raises(ConfigError, match=r"^cmd\.autoencoder_ckpt: 'untrained' is for benchmarks"):
        train(compose_config(_stage2("untrained"), run_dir=run))
    assert not run.exists()  # nothing was built or written


def test_stage2_on_an_autoencoder_of_other_data_fails_naming_the_key(ae_run: Path, tmp_path: Path) -> None:
    ckpt = ae_run / "checkpoints" / "last.ckpt"
    cfg = compose_config(_stage2(ckpt, "data.num_frames=8"), run_dir=tmp_path)
    validate_config(cfg)  # the file exists; what it holds is checked when it is read
    with pytest.raises(
        ConfigError, match=r"^cmd\.autoencoder_ckpt: .*data\.num_frames=4.*data\.num_frames=8"
    ):
        build_module(cfg)


def test_stage2_on_a_checkpoint_that_is_not_an_autoencoder_fails_naming_the_key(
    cmd_run: Path, tmp_path: Path
) -> None:
    cfg = compose_config(_stage2(cmd_run / "checkpoints" / "last.ckpt"), run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^cmd\.autoencoder_ckpt: .*not of a CMD autoencoder"):
        build_module(cfg)


def test_a_stage2_checkpoint_refuses_another_autoencoder(ae_run: Path, cmd_run: Path, tmp_path: Path) -> None:
    """Same architecture, other weights (e.g. the autoencoder retrained): the latents mean something else."""
    checkpoint = torch.load(ae_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    name = next(k for k in checkpoint["state_dict"] if k.endswith("weight"))
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name] + 0.01
    other = tmp_path / "other_ae.ckpt"
    torch.save(checkpoint, other)
    with pytest.raises(ConfigError, match=r"^cmd\.autoencoder_ckpt: .*weights"):
        load_module_from_checkpoint(cmd_run / "checkpoints" / "last.ckpt", [f"cmd.autoencoder_ckpt={other}"])


def test_untrained_autoencoder_builds_the_pipeline_for_benchmarks(tmp_path: Path) -> None:
    overrides = ["model=cmd", "cmd.autoencoder_ckpt=untrained", "task_name=bench", *TINY_DATA]
    cfg = compose_config(overrides, run_dir=tmp_path)
    validate_config(cfg)
    module = build_module(cfg)
    assert module.motion_shape == (8, 4, 16) and module.content_shape == (3, 1, 16, 16)
    videos = module.generate(1, sampler={"name": "ddim", "steps": 2})
    assert videos.shape == (1, 3, 4, 16, 16) and videos.abs().max() <= 1


def test_guided_motion_sampling_gives_both_halves_the_sampled_content_frame(cmd_run: Path) -> None:
    """Guidance acts on the class only: the conditional and the null half of every guided motion call see
    the same content frame, the one the content stage produced."""
    module, _ = load_module_from_checkpoint(cmd_run / "checkpoints" / "last.ckpt")
    motion = module.ema_denoiser.motion
    calls = []
    forward = motion.forward

    def spy(x, t, cond):
        calls.append(cond)
        return forward(x, t, cond)

    motion.forward = spy
    module.generate(2, labels=torch.tensor([0, 1]), guidance_scale=2.0, sampler={"name": "ddim", "steps": 2})
    assert len(calls) == 2
    null = module.conditioner.num_classes
    for cond in calls:
        assert cond.labels.tolist() == [0, 1, null, null]
        frames = cond.content_frame
        assert frames.shape == (4, 3, 16, 16)
        torch.testing.assert_close(frames[:2], frames[2:])
    assert not torch.equal(calls[0].content_frame[0], calls[0].content_frame[1])  # each video its own


def _tiny_sd_vae_folder(folder: Path) -> Path:
    """A diffusers AutoencoderKL with SD's layout (4 blocks: 8x downsampling, 4 latent channels), tiny widths."""
    return write_tiny_vae(folder, num_blocks=4, sample_size=256)


def test_latent_pipeline_at_256px_16_frames_has_the_spec_shapes(tmp_path: Path) -> None:
    """Spec §4 / test 14: SD-VAE latents 4x32x32 per frame; content noise (B, 4, 32, 32), motion noise
    (B, 8, 16, 32) = D x F x (W' + H'); the decoded video (B, 3, 16, 256, 256) in [-1, 1]."""
    overrides = [
        "model=cmd",
        "cmd.autoencoder_ckpt=untrained",
        "task_name=bench",
        "autoencoder=sd_vae",
        f"autoencoder.path={_tiny_sd_vae_folder(tmp_path / 'vae')}",
        "data.resolution=256",
        "data.num_frames=16",
    ]
    module = build_module(compose_config(overrides, run_dir=tmp_path / "run"))
    assert module.content_shape == (4, 1, 32, 32) and module.motion_shape == (8, 16, 32)
    assert module.cmd_autoencoder.motion_shape(16) == (8, 16, 32)
    shapes = []
    for network in (module.ema_denoiser.content, module.ema_denoiser.motion):
        forward = network.forward
        network.forward = lambda x, t, cond, f=forward: shapes.append(tuple(x.shape)) or f(x, t, cond)
    videos = module.generate(1, sampler={"name": "ddim", "steps": 1})
    assert shapes == [(1, 4, 1, 32, 32), (1, 8, 16, 32)]
    assert videos.shape == (1, 3, 16, 256, 256) and videos.abs().max() <= 1


def test_sd_unet_content_model_variant_samples_through_the_same_pipeline(tmp_path: Path) -> None:
    """model=cmd_sd: the content frame comes from the (here tiny, untrained) text-to-image U-Net, per frame."""
    from vidgen.models.latent_unet import LatentUNet

    overrides = [
        "model=cmd_sd",
        "cmd.autoencoder_ckpt=untrained",
        "task_name=bench",
        "diffusion=sd",
        *TINY_DATA,
    ]
    module = build_module(compose_config(overrides, run_dir=tmp_path))
    assert isinstance(module.denoiser.content, LatentUNet) and module.denoiser.content.temporal == "none"
    videos = module.generate(1, sampler={"name": "ddim", "steps": 1})
    assert videos.shape == (1, 3, 4, 16, 16)


def test_fsdp_shards_both_cmd_denoisers_block_by_block(tmp_path: Path) -> None:
    """Under FSDP every block of the content and of the motion model is its own unit (not one big root)."""
    from vidgen.lit.parallel import sharding_units

    overrides = ["model=cmd", "cmd.autoencoder_ckpt=untrained", "task_name=bench", *TINY_DATA]
    denoisers = build_module(compose_config(overrides, run_dir=tmp_path)).denoiser
    units = sharding_units(denoisers)
    assert units == [*denoisers.content.blocks, *denoisers.motion.blocks] and len(units) > 2


def test_stage2_resumes_from_its_last_checkpoint(ae_run: Path, cmd_run: Path, tmp_path: Path) -> None:
    """``ckpt_path=last.ckpt`` continues stage 2 (both denoisers, EMA, optimizer) on the same autoencoder."""
    overrides = _stage2(
        ae_run / "checkpoints" / "last.ckpt",
        f"ckpt_path={cmd_run / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_steps=8",
        "samples.final_num_videos=0",
    )
    summary = train(compose_config(overrides, run_dir=tmp_path / "resumed"))
    assert summary["global_step"] == 8 and not summary["interrupted"]


def test_periodic_evaluation_of_the_autoencoder_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    cfg = compose_config(["model=cmd_ae", "evaluation.every_n_steps=10", *TINY_DATA], run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^evaluation\.every_n_steps: the CMD autoencoder"):
        validate_config(cfg)


def test_stage1_posterior_draws_of_the_sd_vae_come_from_the_step(tmp_path: Path) -> None:
    """Stage 1 on SD latents samples the VAE's posterior from the step's generator: the same step gives the
    same loss whatever the global RNG did in between (an exact resume), another step other draws."""
    overrides = [
        "model=cmd_ae",
        "autoencoder=sd_vae",
        f"autoencoder.path={_tiny_sd_vae_folder(tmp_path / 'vae')}",
        "data.resolution=16",
        "data.num_frames=4",
    ]
    module = build_module(compose_config(overrides, run_dir=tmp_path / "run"))
    assert module.frame_autoencoder.sample_posterior
    batch = {"video": torch.rand(2, 3, 4, 16, 16) * 2 - 1}

    def loss_at(step: int, global_seed: int) -> torch.Tensor:
        module._step_override = step  # no trainer: the step comes from here
        torch.manual_seed(global_seed)
        with torch.no_grad():
            return module.training_step(batch, 0)

    module.log = lambda *args, **kwargs: None
    type(module).global_step = property(lambda self: getattr(self, "_step_override", 0))
    try:
        first, again, other = loss_at(5, 0), loss_at(5, 123), loss_at(6, 0)
    finally:
        del type(module).global_step
    assert torch.equal(first, again) and not torch.equal(first, other)
