"""Make the tiny text encoder of the Latent-Shift ablations at tiny scale (``scale=latent_shift/tiny``).

``python experiments/latent_shift/make_tiny_text_encoder.py [--seed 0] [key=value ...]``

At paper scale the captions go through Stable Diffusion's frozen CLIP ViT-L/14 text encoder. No such model
exists at the tiny scale's size and none can be downloaded, so this script writes a randomly initialised
open_clip CLIP model of a tiny architecture, in open_clip's real on-disk format, which the text conditioner
(``conditioner=text``, :class:`vidgen.conditioning.text.TextConditioner`) loads like any open_clip
checkpoint:

* ``<paths.output_root>/latent_shift_tiny_clip/latent-shift-tiny-clip.json``: the model config (open_clip
  registers it under its file stem; ``conditioner.model_name`` names this file);
* ``<paths.output_root>/latent_shift_tiny_clip/tiny_clip.bin``: the state dict of the whole CLIP model
  (``conditioner.path``); only its text tower is used;
* ``<paths.output_root>/latent_shift_tiny_clip/tiny_clip.provenance.json``: seed, architecture, sizes.

The paths are the tiny scale's ``conditioner.path`` / ``conditioner.model_name``, so ``key=value`` overrides
of the training config (e.g. ``paths.output_root=/scratch/outputs``) move them together.

Why a random encoder is enough here: the encoder is frozen in training (as CLIP is in Latent-Shift), so all
the denoiser needs is that different captions give different, deterministic token states, which a random
embedding table and transformer do (the synthetic captions, "a red square moving left", differ by their
words). What it lacks is CLIP's semantics (similar words close together), which the synthetic world does not
need. The text width (32) is the tiny U-Net's cross-attention width.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import vidgen  # noqa: E402, F401  (registers the config resolvers)

#: open_clip architecture name = the model-config JSON's file stem
ARCH = "latent-shift-tiny-clip"
#: a tiny CLIP: 2-layer text transformer of width 32 (CLIP's tokenizer and 77-token context), and a
#: 1-layer vision tower that is saved (open_clip checkpoints hold the whole model) but never used
ARCH_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
#: the script to name in error messages when the files are missing
COMMAND = "python experiments/latent_shift/make_tiny_text_encoder.py"


def compose_tiny(overrides: list[str]) -> Any:
    """The training config of the tiny Latent-Shift ablations (where the files are expected)."""
    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=["experiment=latent_shift/temporal", "scale=latent_shift/tiny", *overrides],
        )


def write_tiny_text_encoder(checkpoint: Path, config_json: Path, seed: int = 0) -> dict[str, Any]:
    """Write the model config to ``config_json`` (its stem is the architecture name) and the randomly
    initialised CLIP state dict to ``checkpoint``; returns the provenance record (also written next to the
    checkpoint as ``<stem>.provenance.json``)."""
    import open_clip

    if config_json.suffix != ".json":
        raise ValueError(f"the model config must be a .json file, got {config_json}")
    config_json.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    config_json.write_text(json.dumps(ARCH_CONFIG, indent=2))
    open_clip.add_model_config(config_json)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.create_model(config_json.stem, pretrained=None, pretrained_text=False)
    state = model.state_dict()
    torch.save(state, checkpoint)
    text_params = sum(
        v.numel() for k, v in state.items() if not k.startswith("visual.") and v.is_floating_point()
    )
    record = {
        "architecture": config_json.stem,
        "config": ARCH_CONFIG,
        "seed": seed,
        "initialisation": "random (open_clip's default init), not trained",
        "tensors": len(state),
        "text_tower_parameters": int(text_params),
        "checkpoint": str(checkpoint),
        "model_config": str(config_json),
    }
    checkpoint.with_name(f"{checkpoint.stem}.provenance.json").write_text(json.dumps(record, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = parser.parse_args(argv)

    cfg = compose_tiny(list(args.overrides))
    checkpoint = Path(str(cfg.conditioner.path))
    config_json = Path(str(cfg.conditioner.model_name))
    if config_json.stem != ARCH:
        print(f"Error: conditioner.model_name must end in {ARCH}.json, got {config_json}", file=sys.stderr)
        return 1
    record = write_tiny_text_encoder(checkpoint, config_json, args.seed)
    print(
        f"Wrote {checkpoint} ({record['tensors']} tensors; text tower {record['text_tower_parameters']:,} "
        f"parameters) and {config_json}"
    )

    # Check: the files load through the training config's text conditioner and give distinct states.
    from vidgen.config.instantiate import instantiate_node

    conditioner = instantiate_node(cfg.conditioner)
    states, _, _ = conditioner.encode(["a red square moving left", "a blue circle moving up"])
    if states.shape[-1] != int(cfg.conditioner.text_dim) or torch.allclose(states[0], states[1]):
        print("Error: the text encoder does not give distinct states of width text_dim", file=sys.stderr)
        return 1
    print(f"Loaded through conditioner=text: {conditioner.source}, token states {tuple(states.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
