"""Latent-Shift end to end on the tiny U-Net, on the CPU.

Train on captioned synthetic clips with a tiny open_clip text encoder (written by the test, caption dropout on)
through ``vidgen.train``; sample videos (.mp4) and images (.png, ``data.num_frames=1``, the paper's DDPM with 100
steps and guidance) from the checkpoint through ``vidgen.sample``, with and without the shift on the same weights;
one-frame training writes PNG samples; errors for a frame count or an override the checkpoint cannot take;
``vidgen.bench``'s side-by-side comparison of ``latent_shift`` and ``latent_vdm``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from tests.conftest import TINY_RUN, compose_config
from tests.tiny_open_clip import TEXT_WIDTH, forbid_open_clip_downloads, save_tiny_open_clip
from vidgen.autoencoders import build_autoencoder
from vidgen.benchmark.compare import compose_compared_configs, format_comparison, run_comparison
from vidgen.conditioning import build_conditioner
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.diffusion import build_diffusion
from vidgen.io.video import read_image, read_video
from vidgen.lit.build import build_module
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.sampling import check_frame_count
from vidgen.lit.training import train
from vidgen.models.latent_unet import LatentUNet

CAPTIONS = ["a red square moving left", "a blue circle moving up"]
#: the tiny Latent-Shift: 4-frame 16x16 clips, Stable Diffusion's schedule and eps prediction (the paper's)
LATENT_SHIFT = [
    "model=latent_shift",
    "diffusion=sd",
    "diffusion.prediction=eps",
    "data.num_frames=4",
    "data.resolution=16",
    "data.batch_size=4",
    "data.val_clips=4",
]
#: the paper's sampler for text-to-image: ancestral DDPM on 100 respaced steps, classifier-free guidance
PAPER_SAMPLER = ["sampler=ddpm", "sampler.steps=100", "guidance_scale=3.0"]


@pytest.fixture(autouse=True)
def forbid_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_open_clip_downloads(monkeypatch)


@pytest.fixture(scope="module")
def text_overrides(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``conditioner=text`` on a tiny open_clip model written to disk, with caption dropout (guidance)."""
    checkpoint, config = save_tiny_open_clip(tmp_path_factory.mktemp("clip"))
    return [
        "conditioner=text",
        f"conditioner.path={checkpoint}",
        f"conditioner.model_name={config}",
        f"conditioner.text_dim={TEXT_WIDTH}",
        "conditioner.max_length=16",
        "conditioner.drop_prob=0.5",
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, text_overrides: list[str]) -> Path:
    """``last.ckpt`` of a tiny text-conditional Latent-Shift trained for two steps by ``vidgen.train``."""
    run_dir = tmp_path_factory.mktemp("latent_shift") / "run"
    overrides = [
        *LATENT_SHIFT,
        *text_overrides,
        *TINY_RUN,
        "trainer.max_steps=2",
        "samples.num_videos=0",
        "samples.final_num_videos=0",
        "logger=csv",
    ]
    summary = train(compose_config(overrides, run_dir=run_dir))
    assert summary["global_step"] == 2 and not summary["interrupted"]
    return run_dir / "checkpoints" / "last.ckpt"


def _sample(ckpt: Path, out: Path, overrides: list[str]) -> list[Path]:
    """``vidgen.sample`` on the CPU with native pixels (``upscale=1``) into ``out``."""
    cfg = compose_config(
        [f"ckpt_path={ckpt}", f"out_dir={out}", "device=cpu", "upscale=1", *overrides],
        run_dir=out,
        config_name="sample",
    )
    return sample(cfg)


def test_video_samples_from_the_checkpoint(checkpoint: Path, tmp_path: Path) -> None:
    captions = json.dumps(CAPTIONS)
    written = _sample(
        checkpoint, tmp_path, ["num_videos=2", f"captions={captions}", "sampler=ddim", "sampler.steps=3"]
    )
    assert [p.name for p in written] == ["sample_000.mp4", "sample_001.mp4", "grid.mp4"]
    for path in written[:2]:
        frames = read_video(path)
        assert frames.shape == (4, 16, 16, 3) and frames.dtype == torch.uint8
    assert read_video(written[2]).shape == (4, 2 + 18, 2 + 2 * 18, 3)  # two clips side by side, 2 px padding
    conditions = json.loads((tmp_path / "conditions.json").read_text())
    assert conditions["captions"] == {"sample_000.mp4": CAPTIONS[0], "sample_001.mp4": CAPTIONS[1]}


def test_text_to_image_from_the_video_model_with_and_without_the_shift(
    checkpoint: Path, tmp_path: Path
) -> None:
    def image(name: str, caption: str, extra: tuple[str, ...] = ()) -> torch.Tensor:
        overrides = ["data.num_frames=1", "num_videos=1", f"captions={json.dumps([caption])}"]
        written = _sample(checkpoint, tmp_path / name, [*overrides, *extra])
        assert [p.name for p in written] == ["sample_000.png", "grid.png"]
        assert not list((tmp_path / name).glob("*.mp4"))
        assert read_image(written[1]).shape == (2 + 16 + 2, 2 + 16 + 2, 3)  # one image in a 2 px frame
        return read_image(written[0])

    paper = image("paper", CAPTIONS[0], tuple(PAPER_SAMPLER))
    assert paper.shape == (16, 16, 3) and paper.dtype == torch.uint8 and paper.float().std() > 0

    short = ("sampler=ddpm", "sampler.steps=10", "guidance_scale=3.0")  # the comparisons, on fewer steps
    shifted = image("shift", CAPTIONS[0], short)
    assert not torch.equal(image("other_caption", CAPTIONS[1], short), shifted)  # the caption is read
    # the same weights, seed and caption as the per-frame U-Net: the zeros of the one-frame shift matter
    without_shift = image("no_shift", CAPTIONS[0], (*short, 'config_overrides=["model.temporal=none"]'))
    assert (without_shift.float() - shifted.float()).abs().mean() > 1.0
    assert torch.equal(image("again", CAPTIONS[0], short), shifted)  # the differences are not sampling noise


def test_one_frame_training_writes_png_samples(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        *LATENT_SHIFT,
        *TINY_RUN,
        "data.num_frames=1",
        "trainer.max_steps=1",
        "trainer.val_check_interval=1",
        "sampler.steps=2",
    ]
    summary = train(compose_config(overrides, run_dir=run_dir))
    assert summary["global_step"] == 1
    names = ["grid.png", "sample_000.png", "sample_001.png"]
    for folder in (run_dir / "samples" / "step_0000001", run_dir / "samples" / "final"):
        assert sorted(p.name for p in folder.iterdir()) == names, folder
        assert read_image(folder / "sample_000.png").shape == (128, 128, 3)  # upscaled 8x for viewing
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    logged = events.Images("samples")  # one image summary per validation: the two images side by side
    assert [(e.step, e.height, e.width) for e in logged] == [(1, 128, 2 * 128)]


def _fake_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A checkpoint as ``vidgen.train`` writes it (weights + resolved config) of an untrained module."""
    cfg = compose_config(overrides, run_dir=path.parent)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    module = build_module(cfg, config=resolved)
    torch.save({"state_dict": module.state_dict(), "vidgen_config": resolved}, path)
    return path


def test_frame_count_and_overrides_the_checkpoint_cannot_take(tmp_path: Path) -> None:
    small = ["data.num_frames=4", "data.resolution=16", "model.size=tiny"]
    tube = _fake_checkpoint(
        tmp_path / "tube.ckpt",
        [*small, "model.depth=2", "model.hidden_size=32", "model.num_heads=2", "model.patch_embed=tube"],
    )
    for frames in (1, 3):  # not multiples of the tube's temporal stride
        with pytest.raises(ConfigError, match="cannot sample") as info:
            _sample(tube, tmp_path / "out", [f"data.num_frames={frames}", "num_videos=1"])
        assert info.value.key == "data.num_frames"
    with pytest.raises(ConfigError) as info:
        _sample(tube, tmp_path / "out", ["data.num_frames=0"])
    assert info.value.key == "data.num_frames"
    assert not (tmp_path / "out").exists()

    vdm = _fake_checkpoint(tmp_path / "vdm.ckpt", [*small, "model=latent_vdm"])
    with pytest.raises(ConfigError, match="temporal_layers") as info:  # its temporal layers have no place
        _sample(vdm, tmp_path / "out", ['config_overrides=["model.temporal=none"]'])
    assert info.value.key == "config_overrides"
    written = _sample(
        vdm, tmp_path / "out", ["data.num_frames=1", "num_videos=2", "sampler=ddim", "sampler.steps=2"]
    )
    assert [p.suffix for p in written] == [".png"] * 3


def test_bench_compares_latent_shift_and_latent_vdm(tmp_path: Path, text_overrides: list[str]) -> None:
    overrides = [
        *LATENT_SHIFT[1:],  # the model comes from the list
        *text_overrides,
        "model=latte_v1",  # dropped: each listed model replaces it
        "guidance_scale=2.0",
        "sampler=ddim",
        "sampler.steps=2",
        "bench.device=cpu",
        "bench.train_steps=1",
        "bench.warmup_steps=0",
        "bench.batch_size=2",
        "bench.sample_videos=1",
        f"paths.run_dir={tmp_path}",
    ]
    names = ["latent_shift", "latent_vdm"]
    configs = compose_compared_configs(names, overrides)
    assert [cfg.model.temporal for cfg in configs] == ["shift", "attention"]
    assert all(cfg.model.size == "tiny" and cfg.conditioner.kind == "text" for cfg in configs)
    report = run_comparison(names, configs)

    shift, vdm = (instantiate_node(cfg.model) for cfg in configs)
    assert isinstance(shift, LatentUNet) and shift.cross_attention_dim == TEXT_WIDTH
    assert [r["params_trainable"] for r in report["results"]] == [shift.num_params(), vdm.num_params()]
    ratios = report["ratios"]["latent_shift / latent_vdm"]
    assert ratios["params_trainable"] == shift.num_params() / vdm.num_params() < 1  # + temporal attention
    for key in ("train_clips_per_s", "sample_s_per_video"):
        first, second = (r[key] for r in report["results"])
        assert ratios[key] == first / second and first > 0 and second > 0
    # a CPU peak per model where Linux resets the process's peak RSS between them, else no ratio
    from vidgen.benchmark.memory import RSS_PEAK

    per_model = all(result["peak_memory_kind"] == RSS_PEAK for result in report["results"])
    assert ("peak_memory_train_mib" in ratios) == per_model
    if per_model:
        first, second = (r["peak_memory_train_mib"] for r in report["results"])
        assert ratios["peak_memory_train_mib"] == first / second and first > 0 and second > 0
    assert {tuple(r["video_shape"]) for r in report["results"]} == {(3, 4, 16, 16)}

    lines = format_comparison(report).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["", "latent_shift", "latent_vdm", "latent_shift / latent_vdm"]
    params = next(line for line in lines if line.startswith("| trainable params"))
    cells = [cell.strip() for cell in params.strip("|").split("|")]
    assert cells[1].startswith(f"{shift.num_params():,}") and cells[2].startswith(f"{vdm.num_params():,}")
    assert cells[3] == f"{shift.num_params() / vdm.num_params():.3f}"
    assert len([line for line in lines if line.startswith("| ")]) == 2 + 1 + 5  # header, rule, model, 5 rows
    settings = next(line for line in lines if line.startswith("video / latent shape"))
    assert "(3, 4, 16, 16)" in settings and "ddim 2 steps, guidance 2" in settings

    for bad in (["latent_shift"], ["latent_shift", "no_such_model"]):
        with pytest.raises(ConfigError) as info:
            compose_compared_configs(bad, overrides)
        assert info.value.key == "bench.compare"


class _DropsTheFirstFrame(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
        return x[:, :, 1:]


def test_frame_check_catches_a_model_that_returns_other_frames() -> None:
    def module(denoiser: nn.Module) -> VideoDiffusionModule:
        return VideoDiffusionModule(
            denoiser=denoiser,
            autoencoder=build_autoencoder("identity", latent_channels=3),
            conditioner=build_conditioner("none"),
            diffusion=build_diffusion(num_timesteps=100, learn_sigma=False, loss="simple"),
            video_shape=(3, 2, 4, 4),
            sampler={"name": "ddim", "steps": 2},
            optim={"lr": 1e-4},
            ema={"enabled": False},
        )

    with pytest.raises(
        ConfigError, match=r"cannot sample 2 frames.*\(1, 3, 2, 4, 4\).*\(1, 3, 1, 4, 4\)"
    ) as info:
        check_frame_count(module(_DropsTheFirstFrame()), None, None)
    assert info.value.key == "data.num_frames"
    check_frame_count(
        module(LatentUNet(temporal="shift", size="tiny", in_channels=3, input_size=4)), None, None
    )
