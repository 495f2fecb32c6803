"""Sampling FLOPs per video of CMD at the paper's efficiency setting, 16 frames of 512x1024 (seed 003 §4.4:
46.8 TFLOPs for CMD vs 939 for ModelScope, 50 steps), with a report of every stage, with and without
guidance, the VAE and attention's products (the conventions the paper's number may have used).

``python experiments/cmd/efficiency.py [--json out.json]``

Every network is built on the meta device (no memory, no compute) from the configs of ``conf/model/`` with
``data=webvid data.resolution=[512,1024]`` (SD latents 4 x 64 x 128, text-conditional: 77 x 768 text
states stand in for CLIP's):

* ``cmd_sd`` (the paper's text-to-video CMD: SD 1.x's U-Net as the content-frame model, MotionDiT, the
  CMD autoencoder at its paper size, dim 384, depth 8, for a 64 x 128 latent: H' = 32, W' = 64, z_m
  (8, 16, 96)). The motion model at B/2 (the release's default) and L/2 (what the paper's 1.6B parameters
  suggest, spec §5.1).
* ``cmd`` with the release's ContentDiT-L/2 as the content model (text by cross-attention), motion B/2.
* ``latent_shift`` (SD 1.x's U-Net per frame + temporal shift: a video model of ModelScope's family, without
  its temporal layers) on 16 x 64 x 128 latents, for scale.
Counting: :mod:`vidgen.benchmark.sampling_flops` (FlopCounterMode, 2 FLOPs per multiply-accumulate; SD's
VAE is its published architecture without weights), DDIM 50 steps, guidance 4 (2 passes per step) and 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.benchmark.sampling_flops import SamplingFlops, build_counting_module, sampling_flops
from vidgen.lit.cmd_module import CMDDiffusionModule
from vidgen.lit.module import VideoDiffusionModule
from vidgen.runtime import CONFIG_DIR

#: the paper's efficiency setting (seed 003 §4.4): frames, height, width of the video
VIDEO = (16, 512, 1024)
STEPS = 50
GUIDANCE = 4.0
#: the paper's sampling cost of CMD and ModelScope, TFLOPs per video (512x1024x16, 50 steps)
PAPER_TFLOPS = {"CMD": 46.8, "ModelScope": 939.0, "LVDM": 625.6}
COMMON = [
    "data=webvid",
    f"data.resolution=[{VIDEO[1]},{VIDEO[2]}]",
    f"data.num_frames={VIDEO[0]}",
    "sampler=ddim",
    f"sampler.steps={STEPS}",
    f"guidance_scale={GUIDANCE}",
    "task_name=bench",
    "cmd.autoencoder_ckpt=untrained",
    "cmd.untrained_size=paper",
]


def _counting_module(*overrides: str) -> VideoDiffusionModule:
    """The module of ``conf/bench.yaml`` with :data:`COMMON` and ``overrides``, on the meta device."""
    return build_counting_module(compose(config_name="bench", overrides=[*COMMON, *overrides]))


def cmd_sd(motion_size: str) -> CMDDiffusionModule:
    """``model=cmd_sd`` at :data:`VIDEO` (on the meta device), the motion model at ``motion_size``."""
    return _counting_module("model=cmd_sd", f"model.motion.size={motion_size}")


def cmd_dit() -> CMDDiffusionModule:
    """``model=cmd`` at :data:`VIDEO`: the release's ContentDiT-L/2 (text by cross-attention) and MotionDiT-B/2."""
    return _counting_module("model=cmd", "model.content.size=L", "model.motion.size=B")


def latent_shift() -> VideoDiffusionModule:
    """``model=latent_shift model.size=sd`` at :data:`VIDEO` (on the meta device)."""
    return _counting_module("model=latent_shift")


def attention_products(module: VideoDiffusionModule) -> dict[str, int]:
    """FLOPs of attention's ``QK^T`` and ``AV`` (``aten.bmm`` under SDPA's math path) in one forward of each
    denoiser and decoder stage of ``module``: what a count of linear layers and convolutions only (thop's
    convention) leaves out."""
    from dataclasses import replace

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    def bmm(fn: Any, *args: Any) -> int:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn(*args)
        return int(sum(v for op, v in counter.get_flop_counts()["Global"].items() if str(op) == "aten.bmm"))

    cond = module.conditioner.for_sampling(1, device="meta")
    t = torch.zeros(1, dtype=torch.int64, device="meta")
    latents = torch.zeros((1, *module.latent_shape), device="meta")
    out = {"frame_decode": bmm(module.autoencoder.decode, latents)}
    if isinstance(module, CMDDiffusionModule):
        content = torch.zeros((1, *module.content_shape), device="meta")
        motion = torch.zeros((1, *module.motion_shape), device="meta")
        out["content"] = bmm(module.denoiser.content, content, t, cond)
        out["motion"] = bmm(module.denoiser.motion, motion, t, replace(cond, content_frame=content[:, :, 0]))
        out["cmd_decode"] = bmm(module.cmd_autoencoder.decode, content[:, :, 0], motion)
    else:
        out["denoiser"] = bmm(module.denoiser, latents, t, cond)
    return out


def _tf(flops: int) -> str:
    return f"{flops / 1e12:.2f}"


def report(
    counts: dict[str, tuple[SamplingFlops, SamplingFlops]], attention: dict[str, dict[str, int]]
) -> str:
    """A markdown table: per model, TFLOPs per video by stage at guidance 4 and 1, totals in FLOPs and MACs,
    the MACs without the VAE decode, and those also without attention's products (thop's convention)."""
    stages = ("content", "motion", "cmd_decode", "frame_decode", "denoiser")
    header = [
        "model",
        "guidance",
        *stages,
        "total TFLOPs",
        "total TMACs",
        "TMACs w/o VAE",
        "TMACs w/o VAE, w/o attention products",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, pair in counts.items():
        for count in pair:
            names = [s.name for s in count.stages]
            cells = [_tf(count.stage(s).flops) if s in names else "-" for s in stages]
            kept = [s for s in count.stages if s.name != "frame_decode"]
            without_vae = sum(s.flops for s in kept)
            linear = sum(s.flops - attention[name][s.name] * s.calls for s in kept)
            lines.append(
                f"| {name} | {count.guidance_scale:g} | "
                + " | ".join(cells)
                + f" | {_tf(count.total_flops)} | {_tf(count.total_macs)} | {_tf(without_vae // 2)}"
                + f" | {_tf(linear // 2)} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        modules = {
            "cmd_sd, motion B/2": cmd_sd("B"),
            "cmd_sd, motion L/2": cmd_sd("L"),
            "cmd (ContentDiT-L/2), motion B/2": cmd_dit(),
            "latent_shift (SD U-Net)": latent_shift(),
        }
    counts = {
        name: (sampling_flops(module), sampling_flops(module, guidance_scale=1.0))
        for name, module in modules.items()
    }
    first = next(iter(counts.values()))[0]
    print(
        f"16 x 512 x 1024 video, latents {tuple(next(iter(modules.values())).latent_shape)}, {first.sampler}"
    )
    attention = {name: attention_products(module) for name, module in modules.items()}
    print(report(counts, attention))
    for note in first.notes:
        print(f"note: {note}")
    for name, module in modules.items():
        if isinstance(module, CMDDiffusionModule):
            print(f"{name}: motion latent {module.motion_shape}, content frame {module.content_shape}")
        print(f"{name}: {module.num_denoiser_params():,} denoiser parameters")
    if args.json:
        data = {
            name: {"counts": [c.as_dict() for c in pair], "attention_products_per_forward": attention[name]}
            for name, pair in counts.items()
        }
        args.json.write_text(
            json.dumps({"video": VIDEO, "paper_tflops": PAPER_TFLOPS, "counts": data}, indent=2)
        )


if __name__ == "__main__":
    main()
