"""Make the tiny stand-in for an ImageNet DiT checkpoint, for ``experiment=latte/pretrained scale=tiny``
(or ``scale=small``).

``python experiments/latte/make_tiny_dit.py [--scale tiny|small] [--steps 400] [--batch-size 64] [--output PATH]
[key=value ...]``

Latte's learning strategy (a) initialises the video model from a DiT trained on ImageNet images (seed 002,
Sec. 3.3.4). No DiT exists at the tiny scale's size (4 blocks, width 96, 3-channel 16x16 pixels), so this
script trains one, honestly as an image model:

* the network is a DiT: patch embedding, 2D sin-cos positions, timestep + class adaLN-Zero conditioning, a
  stack of blocks that all attend over the patches of one image, DiT's final layer. It is built from vidgen's
  Latte code with every block spatial and one frame (``block_layout`` patched for the construction), so the
  parameter names are DiT's (Latte's names follow DiT's) and the widths are the scale's Latte's;
* it is trained as DiT is, on single images with class labels (10% replaced by the null class): single
  frames of synthetic clips (data seed 1: other clips than the video runs' seed 0), with the scale's
  diffusion (the parameterisation the video runs use; tiny: v-prediction, learned variance, hybrid loss;
  small: v-prediction, fixed variance, Min-SNR-5) and objects of the scale's size, AdamW
  and an EMA whose weights are written, as in the released DiT checkpoints;
* the file is a raw state dict in DiT's key layout (``x_embedder.proj``, ``t_embedder.mlp``,
  ``y_embedder.embedding_table`` with ``num_classes + 1`` rows, ``pos_embed`` ``(1, h*w, D)``,
  ``blocks.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2, adaLN_modulation.1}``, ``final_layer.{linear,
  adaLN_modulation.1}``); every key is checked against that layout before writing.

What it is not: ImageNet pretraining. The images are frames of the same synthetic world the video runs
train on, a far smaller gap than ImageNet -> FaceForensics, so the tiny pretrained arm tests the mechanism
(weights copied, tables tiled, label table dropped, training continues) rather than the paper's finding.

At the end the checkpoint is loaded into the tiny Latte of the sweep (``vidgen.models.pretrained``) and the
report (loaded / tiled / skipped / new / mismatched keys) is printed; a provenance file ``<output>.json``
records the settings and the loss. Default output: the tiny scale's ``scale.dit_checkpoint``
(``<paths.output_root>/latte_tiny_dit/tiny_dit.pt``); with ``--scale small`` a DiT of the small scale's widths
(6 blocks, width 192, patch 4) trained with that scale's diffusion, written to its ``scale.dit_checkpoint``
(``<paths.output_root>/latte_small_dit/tiny_dit.pt``). ``key=value`` arguments are overrides of the training
config (e.g. ``model.hidden_size=48`` for the model-size sweep's widths).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import vidgen  # noqa: E402, F401  (registers the config resolvers)
from vidgen.conditioning import Cond  # noqa: E402
from vidgen.config.instantiate import instantiate_node  # noqa: E402
from vidgen.data.synthetic import SyntheticVideoDataset  # noqa: E402
from vidgen.lit.ema import ema_decay_at, ema_update, make_ema_copy  # noqa: E402
from vidgen.models import latte as latte_module  # noqa: E402
from vidgen.nn.transformer import BlockRole  # noqa: E402

#: DiT's state-dict keys (facebookresearch/DiT models.py), as regular expressions.
DIT_KEY_PATTERNS = [
    r"pos_embed",
    r"x_embedder\.proj\.(weight|bias)",
    r"t_embedder\.mlp\.[02]\.(weight|bias)",
    r"y_embedder\.embedding_table\.weight",
    r"blocks\.\d+\.attn\.(qkv|proj)\.(weight|bias)",
    r"blocks\.\d+\.mlp\.(fc1|fc2)\.(weight|bias)",
    r"blocks\.\d+\.adaLN_modulation\.1\.(weight|bias)",
    r"final_layer\.linear\.(weight|bias)",
    r"final_layer\.adaLN_modulation\.1\.(weight|bias)",
]
#: label dropout of DiT's training (its null class)
LABEL_DROP = 0.1
#: synthetic data seed of the images (the video runs use seed 0)
IMAGE_DATA_SEED = 1


#: the scales whose pretrained arm this script makes a stand-in for (conf/scale/<name>.yaml)
SCALES = ("tiny", "small")


def compose_tiny(overrides: list[str], scale: str = "tiny") -> Any:
    """The training config of the pretrained sweep at ``scale`` (``experiment=latte/pretrained scale=...``)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="train", overrides=["experiment=latte/pretrained", f"scale={scale}", *overrides]
        )


def model_kwargs(cfg: Any) -> dict[str, Any]:
    """The video model's constructor arguments (resolved), without the target."""
    node = OmegaConf.to_container(cfg.model, resolve=True)
    node.pop("_target_", None)
    return node


def build_dit(kwargs: dict[str, Any], num_classes: int) -> torch.nn.Module:
    """A DiT with the video model's sizes: one frame, every block spatial, class-conditional, adaLN."""
    settings = {
        **kwargs,
        "variant": 1,
        "num_frames": 1,
        "num_classes": num_classes,
        "patch_embed": "frame",
        "injection": "adaln",
        "temporal_position": "absolute",
        "text_dim": 0,
        "gradient_checkpointing": False,
    }
    depth = kwargs.get("depth") or latte_module.LATTE_SIZES[kwargs["size"]].depth
    with mock.patch.object(latte_module, "block_layout", lambda variant, d: [BlockRole.SPATIAL] * d):
        model = latte_module.Latte(**settings)
    assert len(model.blocks) == depth and all(role is BlockRole.SPATIAL for role in model.layout)
    return model


def dit_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights in DiT's layout: its parameters plus DiT's saved ``pos_embed`` ``(1, h*w, D)``."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["pos_embed"] = model.pos_embed.detach().clone()[None]
    unknown = [k for k in state if not any(re.fullmatch(p, k) for p in DIT_KEY_PATTERNS)]
    if unknown:
        raise RuntimeError(f"keys outside DiT's layout: {unknown}")
    return state


def train_dit(cfg: Any, steps: int, batch_size: int, seed: int) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the tiny DiT on single synthetic frames; returns the EMA model and a log."""
    torch.manual_seed(seed)
    data = cfg.data
    images = SyntheticVideoDataset(
        num_clips=100_000,
        num_frames=int(data.num_frames),
        resolution=int(data.resolution),
        channels=int(data.channels),
        split="train",
        seed=IMAGE_DATA_SEED,
        object_size=tuple(data.object_size),  # the scale's objects (tiny: the generator's; small: larger)
    )
    model = build_dit(model_kwargs(cfg), images.num_classes)
    ema = make_ema_copy(model)
    diffusion = instantiate_node(cfg.diffusion)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=float(cfg.optim.lr),
        weight_decay=float(cfg.optim.weight_decay),
        betas=tuple(cfg.optim.betas),
    )
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        clips = rng.integers(len(images), size=batch_size)
        frames, labels = [], []
        for index in clips:
            spec = images.describe(int(index))
            frames.append(images.render_frames(spec, [int(rng.integers(spec.num_frames))]))  # (C, 1, R, R)
            labels.append(spec.label)
        x0 = torch.stack(frames)  # (B, C, 1, R, R): one-frame "videos" = images
        y = torch.tensor(labels)
        y = torch.where(torch.rand(batch_size, generator=generator) < LABEL_DROP, images.num_classes, y)
        t = torch.randint(0, diffusion.num_timesteps, (batch_size,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
        cond = Cond(labels=y)
        losses_now = diffusion.training_losses(
            lambda x, tt, cond=cond: model(x, tt, cond), x0, t, noise=noise
        )
        loss = losses_now["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(ema, model, ema_decay_at(step, float(cfg.ema.decay), bool(cfg.ema.warmup)))
        losses.append(float(loss.detach()))
        if (step + 1) % 50 == 0 or step == 0:
            print(f"step {step + 1}/{steps}: loss {np.mean(losses[-50:]):.4f}", flush=True)
    log = {
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "image_data_seed": IMAGE_DATA_SEED,
        "label_drop": LABEL_DROP,
        "num_classes": images.num_classes,
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
        "train_seconds": time.perf_counter() - start,
        "model": {k: v for k, v in model_kwargs(cfg).items() if k != "num_classes"},
        "diffusion": OmegaConf.to_container(cfg.diffusion, resolve=True),
        "optim": OmegaConf.to_container(cfg.optim, resolve=True),
        "ema": OmegaConf.to_container(cfg.ema, resolve=True),
    }
    return ema, log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scale", choices=SCALES, default="tiny", help="the sweep's scale, whose widths the DiT takes"
    )
    parser.add_argument("--output", type=Path, default=None, help="default: the scale's scale.dit_checkpoint")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    cfg = compose_tiny(list(args.overrides), args.scale)
    output = args.output or Path(str(cfg.scale.dit_checkpoint))
    model, log = train_dit(cfg, args.steps, args.batch_size, args.seed)
    state = dit_state_dict(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, output)
    log["keys"] = len(state)
    log["parameters"] = int(sum(v.numel() for k, v in state.items() if k != "pos_embed"))
    output.with_suffix(".json").write_text(json.dumps(log, indent=2))
    print(f"Wrote {output} ({len(state)} tensors in DiT's layout, {log['parameters']:,} parameters)")

    # Check: the checkpoint initialises the video model of the sweep.
    from vidgen.models.pretrained import init_from_dit

    video_model = instantiate_node(cfg.model)
    report = init_from_dit(video_model, output)
    print(report.summary() if hasattr(report, "summary") else report)
    if report.mismatched or not report.loaded:
        print(f"Error: the checkpoint does not fit the {args.scale} scale's Latte", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
