"""Longer videos than a model's clip length: reconstruction guidance vs replacement (VDM Sec. 3.1, Table 6).

``python experiments/vdm/extension.py --ckpt RUN/checkpoints/last.ckpt [--num-videos 32] [--num-frames 32]
[--context 4] [--steps 32] [--weights 2 8] [--seed 0] [--output-dir DIR] [--device auto]``

From one checkpoint (any model trained on the built-in synthetic data, e.g. a tiny VDM 3D U-Net of 8-frame clips),
``--num-videos`` videos of ``--num-frames`` frames are made block by block
(:func:`vidgen.lit.conditional_sampling.extend_videos`): the first block is an ordinary sample of the model's
clip length ``F``; each next window keeps the last ``--context`` frames and generates ``F - context`` new ones.
Arms (the same start noise and first block for all):

* ``replacement``: the kept frames re-noised at every step (Song et al.'s imputation), the new ones sampled
  as usual;
* ``reconstruction w=<w>`` for each ``--weights``: eq. 7, the new frames' prediction corrected by the gradient
  of the kept frames' reconstruction error;
* ``independent blocks``: every window sampled without any conditioning and its new frames appended (the
  lower bound: nothing carries over a join).

Every arm is scored by ``synthetic_long`` (:mod:`vidgen.metrics.synthetic.long_clips`: motion consistency over
windows of ``F`` frames along the whole clip and over the windows straddling each block boundary, colour
constancy) and ``synthetic_structure`` (presence and colour per frame). Writes ``extension.md`` (one row per
arm), ``extension.json``, each arm's first videos as ``<arm>/sample_*.mp4`` and one PNG strip per arm of the
first video's frames around the first join (``<arm>_join.png``) into ``--output-dir`` (default: the
checkpoint's run folder / ``extension``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from vidgen.io.samples import write_samples  # noqa: E402
from vidgen.io.video import video_to_uint8, write_png  # noqa: E402
from vidgen.lit.build import load_module_from_checkpoint  # noqa: E402
from vidgen.lit.conditional_sampling import clip_length, extend_videos  # noqa: E402
from vidgen.metrics.synthetic import SyntheticLongClip, SyntheticStructure  # noqa: E402
from vidgen.runtime import pick_device  # noqa: E402


def arms(weights: list[float]) -> list[tuple[str, str, float]]:
    """``(name, method, weight)`` of every arm; ``independent`` = unconditioned windows."""
    return [
        ("independent blocks", "independent", 0.0),
        ("replacement", "replacement", 0.0),
        *((f"reconstruction w={w:g}", "reconstruction", float(w)) for w in weights),
    ]


def generate(
    module: Any, method: str, weight: float, args: argparse.Namespace, sampler: dict[str, Any]
) -> torch.Tensor:
    """``(N, C, num_frames, H, W)`` videos of one arm (every arm from the same generator seed)."""
    generator = torch.Generator().manual_seed(args.seed)
    if method != "independent":
        return extend_videos(
            module,
            args.num_videos,
            args.num_frames,
            sampler_cfg=sampler,
            context_frames=args.context,
            method=method,
            weight=weight,
            generator=generator,
            batch_size=args.batch_size,
        )
    clip = clip_length(module)
    blocks = [
        module.generate(args.num_videos, generator=generator, sampler=sampler, batch_size=args.batch_size)
    ]
    while sum(b.shape[2] for b in blocks) < args.num_frames:
        window = module.generate(
            args.num_videos, generator=generator, sampler=sampler, batch_size=args.batch_size
        )
        blocks.append(window[:, :, args.context : clip])
    return torch.cat(blocks, dim=2)[:, :, : args.num_frames]


def score(videos: torch.Tensor, clip: int, context: int, data: dict[str, Any]) -> dict[str, float]:
    """``synthetic_long`` and ``synthetic_structure`` of ``videos (N, C, F, H, W)`` in [-1, 1]."""
    uint8 = torch.stack([video_to_uint8(v) for v in videos])  # (N, F, H, W, 3)
    long = SyntheticLongClip(
        num_fake=len(videos), window=clip, window_stride=max(1, clip // 2), block_frames=clip,
        context_frames=context, data=data,
    )  # fmt: skip
    structure = SyntheticStructure(num_fake=len(videos), data=data)
    for metric in (long, structure):
        metric.update_fake(uint8)
    return {**long.compute(), **structure.compute()}


def join_strip(video: torch.Tensor, clip: int, path: Path) -> None:
    """PNG of the frames ``clip - 4 .. clip + 3`` of ``video (C, F, H, W)`` side by side (the first join)."""
    frames = video[:, max(0, clip - 4) : clip + 4]
    write_png(path, torch.cat(list(frames.unbind(1)), dim=-1), scale=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--num-videos", type=int, default=32)
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--context", type=int, default=4)
    parser.add_argument("--steps", type=int, default=32, help="sampler steps per window")
    parser.add_argument("--weights", type=float, nargs="+", default=[2.0, 8.0])
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    module, cfg = load_module_from_checkpoint(args.ckpt)
    module.to(pick_device(args.device))
    clip = clip_length(module)
    sampler = {**OmegaConf.to_container(cfg.sampler, resolve=True), "steps": args.steps}
    if sampler["name"] not in ("ddpm", "ddim", "vdm_ancestral"):
        sampler = {"name": "vdm_ancestral", "steps": args.steps, "gamma": 0.1}
    data = {"frame_stride": int(OmegaConf.select(cfg, "data.frame_stride", default=1) or 1)}
    output = args.output_dir or args.ckpt.resolve().parent.parent / "extension"
    output.mkdir(parents=True, exist_ok=True)

    rows = []
    for name, method, weight in arms(args.weights):
        start = time.perf_counter()
        videos = generate(module, method, weight, args, sampler)
        seconds = time.perf_counter() - start
        folder = output / name.replace(" ", "_").replace("=", "")
        write_samples(folder, videos[:4], fps=8, scale=8)
        join_strip(videos[0], clip, output / f"{folder.name}_join.png")
        rows.append(
            {
                "arm": name,
                "seconds_per_video": seconds / len(videos),
                **score(videos, clip, args.context, data),
            }
        )
        print(f"{name}: {rows[-1]}")

    settings = {
        "ckpt": str(args.ckpt), "clip_frames": clip, "num_frames": args.num_frames, "context": args.context,
        "num_videos": args.num_videos, "sampler": sampler, "seed": args.seed,
    }  # fmt: skip
    (output / "extension.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    keys = [k for k in rows[0] if k != "arm"]
    lines = [
        f"Extension to {args.num_frames} frames of a {clip}-frame model, context {args.context}, "
        f"{args.num_videos} videos, {sampler['name']} {sampler['steps']} steps per window.",
        "",
        "| arm | " + " | ".join(k.replace("synthetic_", "") for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
    ]
    lines += ["| " + r["arm"] + " | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " |" for r in rows]
    (output / "extension.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"Wrote {output / 'extension.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
