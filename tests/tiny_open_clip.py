"""A tiny randomly initialised open_clip model (small ViT + small text transformer) saved in open_clip's real
on-disk format: a state dict plus its model-config JSON. Shared by the tests of everything that loads open_clip
from local files (the text conditioner, CLIPSIM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

#: architecture name; the model-config JSON is saved as ``<NAME>.json`` (open_clip registers it by file stem)
NAME = "vidgen-test-tiny-clip"
CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
#: width of the text transformer (the per-token states)
TEXT_WIDTH = CONFIG["text_cfg"]["width"]


def save_tiny_open_clip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<NAME>.json`` and ``tiny_clip.bin`` (the state dict) into ``folder``; returns their paths."""
    import open_clip

    config = folder / f"{NAME}.json"
    config.write_text(json.dumps(CONFIG))
    open_clip.add_model_config(config)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.create_model(NAME, pretrained=None, pretrained_text=False)
    checkpoint = folder / "tiny_clip.bin"
    torch.save(model.state_dict(), checkpoint)
    return checkpoint, config


def _no_download(*args, **kwargs):
    raise AssertionError(f"a download was attempted: {args} {kwargs}")


def forbid_open_clip_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any open_clip download attempt fail the test."""
    import open_clip.factory

    monkeypatch.setattr(open_clip.factory, "download_pretrained", _no_download)
    monkeypatch.setattr(open_clip.factory, "download_pretrained_from_hf", _no_download)
