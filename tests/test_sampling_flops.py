"""Sampling FLOPs per video by stage (vidgen/benchmark/sampling_flops.py) and the bench's FLOP rows: the
counts follow one forward x model calls x guidance passes, agree with a FlopCounterMode run of the real
``generate`` of tiny models, with Latte's ``count_flops``, and the meta-device SD VAE decoder scales with
the frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import TINY_DATA, compose_config
from vidgen.benchmark.compare import compose_compared_configs, format_comparison, run_comparison
from vidgen.benchmark.sampling_flops import (
    ArchitectureOnlySDVAE,
    build_counting_module,
    count_forward_flops,
    count_model_calls,
    counting_autoencoder,
    sampling_flops,
)
from vidgen.diffusion import build_diffusion
from vidgen.lit.build import build_module
from vidgen.models.latte import count_flops

CLASS = ["conditioner=class", "conditioner.num_classes=5", "guidance_scale=2.0"]
UNTRAINED_CMD = ["cmd.autoencoder_ckpt=untrained", "task_name=bench"]
SAMPLER = {"name": "ddim", "steps": 2}
#: tiny configs (synthetic recipe: every family at its tiny size), 4 frames of 16x16
CASES = {
    "latte_class_guided": ["model=latte_v1", *CLASS],
    "cmd_class_guided": ["model=cmd", *UNTRAINED_CMD, *CLASS],
    "latent_shift_unguided": ["model=latent_shift"],
}


def _config(overrides: list[str], tmp_path: Path):
    return compose_config([*overrides, *TINY_DATA, "sampler=ddim", "sampler.steps=2"], run_dir=tmp_path)


@pytest.mark.parametrize("case", sorted(CASES))
def test_counted_stages_equal_a_flop_counted_generate(case: str, tmp_path: Path) -> None:
    """The per-video count on the meta device is what FlopCounterMode measures over the real ``generate``
    of one video: the model calls, the guidance factor and the decoders are right (and a module with real
    weights counts the same)."""
    cfg = _config(CASES[case], tmp_path)
    module = build_module(cfg)
    torch.manual_seed(0)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module.generate(1, sampler=SAMPLER)
    measured = counter.get_total_flops()
    counted = sampling_flops(build_counting_module(cfg), sampler=SAMPLER)
    assert measured > 0 and counted.total_flops == measured
    assert counted.total_macs * 2 == counted.total_flops == sum(s.flops for s in counted.stages)
    if case.startswith("latte"):  # the cheapest real module: counting it runs one real forward per stage
        assert sampling_flops(module, sampler=SAMPLER).total_flops == measured


def test_latte_denoiser_stage_is_count_flops_times_steps_times_guidance(tmp_path: Path) -> None:
    cfg = _config(CASES["latte_class_guided"], tmp_path)
    module = build_counting_module(cfg)
    assert next(module.denoiser.parameters()).device.type == "meta"
    result = sampling_flops(module, sampler={"name": "ddim", "steps": 7})
    denoiser = result.stage("denoiser")
    cond = module.conditioner.for_sampling(1, device="meta")
    one = count_flops(module.sampling_denoiser, (1, *module.latent_shape), cond)
    assert denoiser.forward_flops == one > 0
    assert (result.model_calls, result.guidance_passes, denoiser.calls) == (7, 2, 14)
    assert denoiser.flops == one * 7 * 2
    assert result.stage("frame_decode").flops == 0  # identity autoencoder
    assert result.total_flops == denoiser.flops
    unguided = sampling_flops(module, sampler={"name": "ddim", "steps": 7}, guidance_scale=1.0)
    assert unguided.stage("denoiser").flops * 2 == denoiser.flops


def test_cmd_stages_sum_to_the_total_and_guidance_doubles_only_the_denoisers(tmp_path: Path) -> None:
    module = build_counting_module(_config(CASES["cmd_class_guided"], tmp_path))
    guided = sampling_flops(module, sampler={"name": "ddpm", "steps": 5})
    plain = sampling_flops(module, sampler={"name": "ddpm", "steps": 5}, guidance_scale=1.0)
    names = ["content", "motion", "cmd_decode", "frame_decode"]
    assert [s.name for s in guided.stages] == names
    assert guided.total_flops == sum(s.flops for s in guided.stages)
    for name in ("content", "motion"):
        stage = guided.stage(name)
        assert stage.forward_flops > 0 and stage.calls == 10 and stage.flops == 2 * plain.stage(name).flops
    assert guided.stage("cmd_decode").flops == plain.stage("cmd_decode").flops > 0
    assert guided.stage("cmd_decode").calls == 1
    content = torch.zeros((1, *module.content_shape), device="meta")[:, :, 0]
    motion = torch.zeros((1, *module.motion_shape), device="meta")
    assert guided.stage("cmd_decode").forward_flops == count_forward_flops(
        module.cmd_autoencoder.decode, content, motion
    )
    report = guided.as_dict()
    assert report["total_macs"] * 2 == report["total_flops"] and "2 FLOPs" in report["convention"]
    assert list(report["stages"]) == names


def test_model_calls_are_the_sampler_steps() -> None:
    diffusion = build_diffusion(learn_sigma=True, loss="hybrid")
    for sampler, calls in (({"name": "ddim", "steps": 7}, 7), ({"name": "ddpm", "steps": 5}, 5)):
        assert count_model_calls(diffusion, sampler, (3, 2, 4, 4), out_channels=6) == calls
    plain = build_diffusion(learn_sigma=False, loss="simple")
    assert count_model_calls(plain, {"name": "dpmsolver", "steps": 4}, (3, 2, 4, 4), out_channels=3) == 4


def test_sd_vae_architecture_without_weights_decodes_on_meta_linearly_in_frames(tmp_path: Path) -> None:
    with torch.device("meta"):
        vae = counting_autoencoder(
            "sd_vae", 4, downsample=8, scaling_factor=0.18215, path=str(tmp_path / "absent"), micro_batch=32
        )
    assert isinstance(vae, ArchitectureOnlySDVAE)
    assert "architecture only, no weights" in vae.counting_note
    assert sum(p.numel() for p in vae.parameters()) == 83_653_863  # SD's VAE
    one, two = (
        count_forward_flops(vae.decode, torch.zeros((1, 4, frames, 32, 32), device="meta"))
        for frames in (1, 2)
    )
    assert one > 0 and two == 2 * one  # frame by frame
    assert vae.decode(torch.zeros((1, 4, 2, 32, 32), device="meta")).shape == (1, 3, 2, 256, 256)


def test_a_vae_folder_config_gives_the_architecture(tmp_path: Path) -> None:
    """With ``autoencoder.path`` present, its ``config.json`` defines the counted VAE (weights never read)."""
    import json

    config = {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4, "layers_per_block": 1}
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **config}))
    with torch.device("meta"):
        vae = counting_autoencoder("sd_vae", 4, downsample=8, scaling_factor=0.18215, path=str(tmp_path))
    assert "vae/config.json, no weights loaded" in vae.counting_note
    assert list(vae.vae.config.block_out_channels) == [8, 8, 8, 8]


def test_bench_adds_flop_rows_and_skips_the_timed_rows(tmp_path: Path) -> None:
    """bench.flops=true bench.time=false: params from the meta build, FLOP rows with first / other ratios,
    every timed row "not measured"; text conditioning counts with stand-in states (no encoder weights)."""
    overrides = [
        *UNTRAINED_CMD,
        *TINY_DATA,
        "conditioner=text",
        "conditioner.text_dim=32",
        "conditioner.path=/nonexistent/clip.bin",
        "guidance_scale=3.0",
        "sampler=ddim",
        "sampler.steps=4",
        "bench.flops=true",
        "bench.time=false",
        f"paths.run_dir={tmp_path}",
    ]
    names = ["cmd", "latent_shift"]
    report = run_comparison(names, compose_compared_configs(names, overrides))
    cmd, shift = report["results"]
    assert cmd["train_clips_per_s"] is None and cmd["params_trainable"] > 0
    assert list(cmd["sampling_flops"]["stages"]) == ["content", "motion", "cmd_decode", "frame_decode"]
    assert list(shift["sampling_flops"]["stages"]) == ["denoiser", "frame_decode"]
    assert shift["sampling_flops"]["stages"]["denoiser"]["calls"] == 8  # 4 steps x 2 passes
    assert any("stand in for the text encoder" in note for note in shift["sampling_flops"]["notes"])
    ratio = report["ratios"]["cmd / latent_shift"]
    assert (
        ratio["sampling_flops"]
        == cmd["sampling_flops"]["total_flops"] / shift["sampling_flops"]["total_flops"]
    )
    assert "train_clips_per_s" not in ratio

    lines = format_comparison(report).splitlines()
    cells = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")[1:]]
        for line in lines
        if line.startswith("| ")
    }
    assert cells["sampling TFLOPs / video"][2] == f"{ratio['sampling_flops']:.3f}"
    assert cells["denoiser (TFLOPs)"][:2] == [
        "-",
        f"{shift['sampling_flops']['stages']['denoiser']['flops'] / 1e12:.4g}",
    ]
    assert cells["content-frame model (TFLOPs)"][2] == "n/a"
    assert cells["sampling time (s/video)"][:2] == ["not measured", "not measured"]
    assert any(
        line.startswith("counted with ddim 4 steps: 4 model calls x 2 passes (guidance 3)") for line in lines
    )
