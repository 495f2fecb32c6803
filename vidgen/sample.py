"""``python -m vidgen.sample ckpt_path=... num_videos=8 sampler=ddim sampler.steps=50 guidance_scale=...``

Writes one .mp4 per video and a ``grid.mp4`` into the Hydra run directory (or ``out_dir``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.schema import SamplerSchema, validate_node
from vidgen.io.video import auto_scale, make_grid_video, write_mp4
from vidgen.lit.build import load_module_from_checkpoint
from vidgen.train import CONFIG_DIR


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda requested but no GPU is available")
    return torch.device(name)


def sample(cfg: DictConfig) -> list[Path]:
    """Generate ``num_videos`` videos from ``ckpt_path``; return the written files (grid last)."""
    if int(cfg.num_videos) < 1:
        raise ConfigError("num_videos", f"must be >= 1, got {cfg.num_videos}")
    module, train_cfg = load_module_from_checkpoint(cfg.ckpt_path, list(cfg.config_overrides))
    sampler_cfg = OmegaConf.to_container(
        cfg.sampler if cfg.get("sampler") else train_cfg.sampler, resolve=True
    )
    validate_node(OmegaConf.create(sampler_cfg), SamplerSchema, "sampler")
    if not cfg.use_ema:
        module.ema_denoiser = None
    module.to(pick_device(str(cfg.device)))
    labels = torch.tensor(list(cfg.labels)) if cfg.get("labels") is not None else None
    num_classes = module.conditioner.num_classes
    if num_classes and labels is None:
        labels = torch.arange(int(cfg.num_videos)) % num_classes  # the classes in turn
    captions = None
    if cfg.get("captions"):
        given = [str(c) for c in cfg.captions]
        captions = [given[i % len(given)] for i in range(int(cfg.num_videos))]
    elif getattr(module.conditioner, "text_dim", 0):
        raise ConfigError("captions", 'this model is text-conditional: give captions=["a ...", ...]')
    scale = cfg.guidance_scale if cfg.guidance_scale is not None else train_cfg.guidance_scale

    start = time.perf_counter()
    videos = module.generate(
        int(cfg.num_videos),
        generator=torch.Generator().manual_seed(int(cfg.seed)),
        labels=labels,
        captions=captions,
        guidance_scale=float(scale),
        sampler=sampler_cfg,
        batch_size=cfg.batch_size,
        progress=True,
    )
    seconds = time.perf_counter() - start

    out_dir = Path(cfg.out_dir)
    scale_px = int(cfg.upscale) if cfg.get("upscale") else auto_scale(videos.shape[-2], videos.shape[-1])
    written = []
    for i, video in enumerate(videos):
        written.append(write_mp4(out_dir / f"sample_{i:03d}.mp4", video, fps=int(cfg.fps), scale=scale_px))
    written.append(write_mp4(out_dir / "grid.mp4", make_grid_video(videos), fps=int(cfg.fps), scale=scale_px))
    conditions: dict[str, dict] = {}  # what each file was generated for (vidgen.evaluate reads it)
    if labels is not None:
        conditions["labels"] = {p.name: int(label) for p, label in zip(written, labels.tolist())}
    if captions is not None:
        conditions["captions"] = {p.name: caption for p, caption in zip(written, captions)}
    if conditions:
        (out_dir / "conditions.json").write_text(json.dumps(conditions, indent=2))
    print(
        f"Wrote {len(videos)} videos + grid.mp4 to {out_dir} "
        f"({sampler_cfg['name']}, {sampler_cfg['steps']} steps, guidance {scale}, {seconds / len(videos):.2f} s/video)"
    )
    return [Path(p) for p in written]


@hydra.main(config_path=CONFIG_DIR, config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        sample(cfg)
    except (ConfigError, ValueError) as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
