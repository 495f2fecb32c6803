"""Build open_clip models from local files only; shared by the text conditioner and the CLIPSIM metric.

An architecture is an open_clip model name (``ViT-B-32``, ``ViT-L-14-quickgelu``, ...) or a local open_clip
model-config JSON (``embed_dim``, ``vision_cfg``, ``text_cfg``) for one open_clip does not ship; the JSON is
registered under its file stem. The weights come from a local checkpoint file, passed to
``open_clip.create_model(name, pretrained=<absolute path>)`` (never a pretrained tag, never ``hf-hub:``), so
nothing is downloaded. Architectures whose text model or tokenizer would come from the Hugging Face hub are
refused. ``open_clip`` is imported on first use (it pulls in torchvision).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch

__all__ = ["OpenClip", "OpenClipError", "create_open_clip", "resolve_architecture"]


class OpenClipError(ValueError):
    """A bad architecture / model-config / checkpoint; ``field`` is the argument at fault (``model_name``,
    ``model_config``, ``checkpoint``) so callers can name their own config key."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class OpenClip(NamedTuple):
    """A loaded open_clip model (eval mode, frozen), its tokenizer, registered name and model config."""

    model: Any
    tokenizer: Any
    name: str
    config: dict[str, Any]


def _register_config(model_name: str, model_config: Path, who: str) -> dict[str, Any]:
    import open_clip

    if not model_config.is_file():
        raise OpenClipError(
            "model_config", f"{who}: open_clip model-config JSON '{model_config}' does not exist"
        )
    with open(model_config, encoding="utf-8") as handle:
        config = json.load(handle)
    missing = [key for key in ("embed_dim", "vision_cfg", "text_cfg") if key not in config]
    if missing:
        raise OpenClipError(
            "model_config",
            f"{who}: model_config '{model_config}' lacks {missing} (an open_clip model config)",
        )
    if model_config.stem != model_name:
        raise OpenClipError(
            "model_name",
            f"{who}: open_clip registers '{model_config}' as architecture '{model_config.stem}'; set model_name "
            f"to '{model_config.stem}' (got '{model_name}')",
        )
    open_clip.add_model_config(model_config)
    return config


def resolve_architecture(
    model_name: str, model_config: str | Path | None = None, who: str = "open_clip"
) -> tuple[str, dict[str, Any]]:
    """The open_clip architecture name and its model config.

    Args:
        model_name: an open_clip model name, or a path to a model-config JSON (then its stem is the name).
        model_config: optional model-config JSON for ``model_name`` (its stem must equal ``model_name``).
        who: prefix of error messages (the metric / config node asking).

    Returns:
        ``(name, config)``; a JSON config is registered with open_clip under ``name``.
    """
    import open_clip

    if not isinstance(model_name, str) or not model_name:
        raise OpenClipError(
            "model_name", f"{who}: model_name must be an open_clip architecture, got {model_name!r}"
        )
    if model_config is None and model_name.endswith(".json"):
        model_config = Path(model_name).expanduser()
        model_name = model_config.stem
    elif ":" in model_name:
        raise OpenClipError(
            "model_name",
            f"{who}: model_name '{model_name}' has a schema (hf-hub:, local-dir:); give a plain name",
        )
    if model_config is not None:
        config = _register_config(model_name, Path(model_config).expanduser(), who)
    else:
        config = open_clip.get_model_config(model_name)
        if config is None:
            raise OpenClipError(
                "model_name",
                f"{who}: open_clip has no architecture '{model_name}'; give a model-config JSON for a custom one",
            )
    text_cfg = config.get("text_cfg", {})
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg or "siglip" in model_name.lower():
        raise OpenClipError(
            "model_name",
            f"{who}: '{model_name}' uses a Hugging Face text model / tokenizer, which would be downloaded; use an "
            "architecture with open_clip's own tokenizer",
        )
    return model_name, config


def create_open_clip(
    model_name: str,
    checkpoint: str | Path,
    model_config: str | Path | None = None,
    device: torch.device | str = "cpu",
    who: str = "open_clip",
) -> OpenClip:
    """Build an open_clip model from a local checkpoint only.

    Args:
        model_name, model_config: the architecture (see :func:`resolve_architecture`).
        checkpoint: local open_clip checkpoint (a state dict, as open_clip saves and loads it).
        device: where the model is put.
        who: prefix of error messages.

    Returns:
        :class:`OpenClip` with the model in eval mode with ``requires_grad`` off, on ``device``, and its
        tokenizer (a list of captions -> ``(B, context_length)`` int64 token ids).
    """
    import open_clip

    name, config = resolve_architecture(model_name, model_config, who)
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise OpenClipError("checkpoint", f"{who}: open_clip checkpoint '{path}' does not exist")
    if "openai" in path.name.lower() and "quickgelu" not in name.lower():
        warnings.warn(
            f"{who}: '{path.name}' looks like OpenAI CLIP weights, which need a QuickGELU architecture "
            f"(e.g. '{name}-quickgelu'); '{name}' uses GELU",
            UserWarning,
            stacklevel=2,
        )
    try:
        model = open_clip.create_model(
            name,
            pretrained=str(path),  # an absolute path to an existing file: never a tag, never a download
            device=device,
            pretrained_image=False,
            pretrained_text=False,
            weights_only=True,
        )
    except RuntimeError as error:  # state-dict keys / shapes of another architecture
        first = str(error).strip().splitlines()[0]
        raise OpenClipError(
            "checkpoint", f"{who}: '{path}' does not hold weights of architecture '{name}': {first}"
        ) from error
    model.eval().requires_grad_(False)
    return OpenClip(model=model, tokenizer=open_clip.get_tokenizer(name), name=name, config=config)
