"""Stable Diffusion 1.x's text encoder, a Hugging Face transformers ``CLIPTextModel``, loaded into an open_clip
text tower without transformers.

``conditioner.path`` may name a Stable Diffusion folder (its ``text_encoder/`` is read) or a ``CLIPTextModel``
folder itself (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``; ``.fp16`` variants and
sharded ``*.index.json`` weights too). Its state dict is renamed to open_clip's text-tower layout and loaded,
strictly, into the :class:`~vidgen.conditioning.text_encoder.OpenClipTextEncoder` of the configured open_clip
architecture (``conditioner.model_name``; ``ViT-L-14-quickgelu`` for SD 1.x):

==========================================================  ==============================================
Hugging Face (``text_model.`` + ...)                        open_clip text tower
==========================================================  ==============================================
``embeddings.token_embedding.weight``                       ``token_embedding.weight``
``embeddings.position_embedding.weight``                    ``positional_embedding``
``encoder.layers.N.layer_norm1.{weight,bias}``              ``transformer.resblocks.N.ln_1.*``
``encoder.layers.N.self_attn.{q,k,v}_proj.{weight,bias}``   ``transformer.resblocks.N.attn.in_proj_{weight,bias}``
                                                            (q, k, v concatenated along the output axis)
``encoder.layers.N.self_attn.out_proj.*``                   ``transformer.resblocks.N.attn.out_proj.*``
``encoder.layers.N.layer_norm2.*``                          ``transformer.resblocks.N.ln_2.*``
``encoder.layers.N.mlp.fc1.*`` / ``mlp.fc2.*``              ``transformer.resblocks.N.mlp.c_fc.*`` / ``c_proj.*``
``final_layer_norm.*``                                      ``ln_final.*``
==========================================================  ==============================================

Both are the same pre-LayerNorm causal transformer (HF's ``last_hidden_state`` is open_clip's output after
``ln_final``, the states Stable Diffusion's cross-attention reads). Only the text tower is built: the image
tower is never created, and open_clip's ``text_projection`` (absent from a ``CLIPTextModel``) is not part of
the encoder, so nothing is left randomly initialised. Ignored, and reported: ``position_ids`` (a buffer older
transformers saved), ``text_projection.weight`` (``CLIPTextModelWithProjection``) and the image tower of a
full ``CLIPModel``. The HF config must agree with the architecture: widths, layers, heads, context length,
vocabulary, MLP width, activation (``hidden_act`` ``quick_gelu`` needs a QuickGELU architecture, ``gelu`` a
GELU one) and LayerNorm epsilon; the error names what differs.

Tokenizer: open_clip's own tokenizer of the architecture is used (the same OpenAI CLIP BPE vocabulary as
SD's ``tokenizer/``; when the folder has ``tokenizer/vocab.json`` it is checked to equal open_clip's, so a
tokenizer with added tokens is refused). Padding differs: SD 1.x's tokenizer pads with the end-of-text token
(``pad_token`` ``<|endoftext|>``, id 49407), open_clip's with 0 (the id of ``!``, which SD 2.x's tokenizer
pads with). The causal encoder gives the same states up to and including the first end-of-text token either
way; the states after it differ, and SD's U-Net attends to all 77 without a mask. :func:`read_pad_token_id`
reads the folder's pad token so that the conditioner can pad as Stable Diffusion did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vidgen.conditioning.open_clip_loader import OpenClipError, resolve_architecture
from vidgen.conditioning.text_encoder import OpenClipTextEncoder
from vidgen.config.errors import ConfigError
from vidgen.config.files import TRANSFORMERS_WEIGHT_NAMES, find_weights, read_json_object, read_state_dict

__all__ = [
    "HFClipText",
    "HFTextConfig",
    "convert_hf_clip_text_state_dict",
    "find_text_encoder_folder",
    "load_hf_clip_text",
    "read_hf_text_config",
    "read_pad_token_id",
]

PATH_KEY = "conditioner.path"
NAME_KEY = "conditioner.model_name"
#: prefix of a CLIPTextModel's tensors
HF_PREFIX = "text_model."
#: open_clip's names of CLIP's special tokens -> Hugging Face's
_SPECIAL_NAMES = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
#: HF hidden_act -> open_clip quick_gelu flag
_ACTIVATIONS = {"quick_gelu": True, "gelu": False}
_LAYER = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.")


def _ignored(name: str) -> bool:
    """Tensors of a CLIPTextModel / CLIPModel file that the text tower does not use."""
    return (
        name == "text_model.embeddings.position_ids"
        or name in ("text_projection.weight", "visual_projection.weight", "logit_scale")
        or name.startswith("vision_model.")
    )


@dataclass(frozen=True)
class HFTextConfig:
    """The shape of a ``CLIPTextModel``: sizes read off the weights, the rest from its ``config.json``
    (transformers' ``CLIPTextConfig`` defaults where a key is absent)."""

    vocab_size: int
    width: int
    layers: int
    heads: int
    intermediate_size: int
    context_length: int
    hidden_act: str
    layer_norm_eps: float
    file: Path


class HFClipText(NamedTuple):
    """A loaded text encoder: the open_clip-layout encoder (weights loaded, eval mode, frozen), the
    architecture's tokenizer, what was read and what was ignored."""

    encoder: Any
    tokenizer: Any
    name: str
    folder: Path
    weights: Path
    pad_token_id: int | None
    ignored: list[str]


def find_text_encoder_folder(path: Path, key: str = PATH_KEY) -> tuple[Path, Path | None]:
    """``(text encoder folder, tokenizer folder or None)`` for a Stable Diffusion folder (``text_encoder/``,
    ``tokenizer/``) or a ``CLIPTextModel`` folder (``config.json``; a sibling ``tokenizer/`` is used when its
    parent is a Stable Diffusion folder)."""
    if (path / "text_encoder" / "config.json").is_file():
        tokenizer = path / "tokenizer"
        return path / "text_encoder", tokenizer if tokenizer.is_dir() else None
    if (path / "config.json").is_file():
        sibling = path.parent / "tokenizer"
        return path, sibling if path.name == "text_encoder" and sibling.is_dir() else None
    if (path / "model_index.json").is_file() or (path / "unet").is_dir() or (path / "text_encoder").is_dir():
        raise ConfigError(
            key,
            f"Stable Diffusion folder '{path}' has no text_encoder/config.json (the CLIPTextModel's config); "
            "conditioner.path must name a folder with the text encoder, or an open_clip checkpoint file",
        )
    raise ConfigError(
        key,
        f"'{path}' is a folder but neither a Stable Diffusion folder (text_encoder/config.json) nor a Hugging "
        "Face CLIPTextModel folder (config.json + model.safetensors); for an open_clip checkpoint give the file",
    )


def _tensor(state: dict[str, Any], name: str, file: Path, key: str) -> torch.Tensor:
    value = state.get(name)
    if not isinstance(value, torch.Tensor):
        raise ConfigError(key, f"'{file}' has no tensor '{name}': not a CLIPTextModel state dict")
    return value


def read_hf_text_config(
    file: Path, state: dict[str, Any], weights: Path, key: str = PATH_KEY
) -> HFTextConfig:
    """Read a ``CLIPTextModel`` ``config.json`` (or a ``CLIPModel``'s ``text_config``) together with the sizes
    of its weights; a size the config states must agree with the weights."""
    raw = read_json_object(file, key)
    config = raw.get("text_config", raw) if raw.get("model_type") == "clip" else raw
    if not isinstance(config, dict):
        raise ConfigError(key, f"'{file}': text_config is not a JSON object")
    token = _tensor(state, f"{HF_PREFIX}embeddings.token_embedding.weight", weights, key)
    position = _tensor(state, f"{HF_PREFIX}embeddings.position_embedding.weight", weights, key)
    fc1 = _tensor(state, f"{HF_PREFIX}encoder.layers.0.mlp.fc1.weight", weights, key)
    layers = len({int(m.group(1)) for name in state if (m := _LAYER.match(name))})
    sizes = {
        "vocab_size": int(token.shape[0]),
        "hidden_size": int(token.shape[1]),
        "num_hidden_layers": layers,
        "intermediate_size": int(fc1.shape[0]),
        "max_position_embeddings": int(position.shape[0]),
    }
    differ = [
        f"{name} {config[name]} (weights: {size})"
        for name, size in sizes.items()
        if config.get(name, size) != size
    ]
    if differ:
        raise ConfigError(key, f"'{file}' disagrees with the weights '{weights}': {', '.join(differ)}")
    return HFTextConfig(
        vocab_size=sizes["vocab_size"],
        width=sizes["hidden_size"],
        layers=layers,
        heads=int(config.get("num_attention_heads", 8)),
        intermediate_size=sizes["intermediate_size"],
        context_length=sizes["max_position_embeddings"],
        hidden_act=str(config.get("hidden_act", "quick_gelu")),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
        file=file,
    )


def convert_hf_clip_text_state_dict(
    state: dict[str, Any], layers: int
) -> tuple[dict[str, torch.Tensor], list[str], list[str], list[str]]:
    """Rename a ``CLIPTextModel`` state dict to open_clip's text-tower layout (see the module docstring).

    Returns:
        ``(converted, missing, unexpected, ignored)``: the open_clip-named tensors; HF names the conversion
        needed but did not find; names neither converted nor ignorable; names deliberately ignored.
    """
    used: set[str] = set()
    missing: list[str] = []

    def take(name: str) -> torch.Tensor | None:
        full = HF_PREFIX + name
        if not isinstance(state.get(full), torch.Tensor):
            missing.append(full)
            return None
        used.add(full)
        return state[full]

    pairs: list[tuple[str, str]] = [
        ("token_embedding.weight", "embeddings.token_embedding.weight"),
        ("positional_embedding", "embeddings.position_embedding.weight"),
        ("ln_final.weight", "final_layer_norm.weight"),
        ("ln_final.bias", "final_layer_norm.bias"),
    ]
    for i in range(layers):
        ours, theirs = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            pairs += [
                (f"{ours}ln_1.{kind}", f"{theirs}layer_norm1.{kind}"),
                (f"{ours}attn.out_proj.{kind}", f"{theirs}self_attn.out_proj.{kind}"),
                (f"{ours}ln_2.{kind}", f"{theirs}layer_norm2.{kind}"),
                (f"{ours}mlp.c_fc.{kind}", f"{theirs}mlp.fc1.{kind}"),
                (f"{ours}mlp.c_proj.{kind}", f"{theirs}mlp.fc2.{kind}"),
            ]
    converted: dict[str, torch.Tensor] = {}
    for ours, theirs in pairs:
        value = take(theirs)
        if value is not None:
            converted[ours] = value
    for i in range(layers):
        for kind in ("weight", "bias"):
            parts = [take(f"encoder.layers.{i}.self_attn.{p}_proj.{kind}") for p in ("q", "k", "v")]
            if all(part is not None for part in parts):
                converted[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(parts, dim=0)
    ignored = sorted(name for name in state if name not in used and _ignored(name))
    unexpected = sorted(name for name in state if name not in used and not _ignored(name))
    return converted, missing, unexpected, ignored


def check_architecture(
    hf: HFTextConfig, model_name: str, config: dict[str, Any], key: str = NAME_KEY
) -> None:
    """Fail unless the open_clip architecture ``config`` has exactly the text transformer of ``hf``."""
    from open_clip.model import CLIPTextCfg

    text = CLIPTextCfg(**config.get("text_cfg", {}))
    quick_gelu = bool(config.get("quick_gelu", False))
    if hf.hidden_act not in _ACTIVATIONS:
        raise ConfigError(
            key, f"'{hf.file}': hidden_act '{hf.hidden_act}' has no open_clip equivalent (quick_gelu or gelu)"
        )
    eps = float((text.norm_kwargs or {}).get("eps", 1e-5))
    pairs = [
        ("width / hidden_size", text.width, hf.width),
        ("layers / num_hidden_layers", text.layers, hf.layers),
        ("heads / num_attention_heads", text.heads, hf.heads),
        ("context_length / max_position_embeddings", text.context_length, hf.context_length),
        ("vocab_size", text.vocab_size, hf.vocab_size),
        ("width * mlp_ratio / intermediate_size", int(text.width * text.mlp_ratio), hf.intermediate_size),
        ("quick_gelu / hidden_act", quick_gelu, _ACTIVATIONS[hf.hidden_act]),
        ("LayerNorm eps / layer_norm_eps", eps, hf.layer_norm_eps),
    ]
    differ = [f"{label}: {ours} vs {theirs}" for label, ours, theirs in pairs if ours != theirs]
    special = [
        name
        for name, value in (
            ("embed_cls", text.embed_cls),
            ("no_causal_mask", text.no_causal_mask),
            ("ls_init_value", text.ls_init_value is not None),
            ("act_kwargs", bool(text.act_kwargs)),
        )
        if value
    ]
    if differ or special:
        hint = ""
        if not quick_gelu and hf.hidden_act == "quick_gelu":
            hint = f" (OpenAI CLIP / Stable Diffusion 1.x needs a QuickGELU architecture, e.g. '{model_name}-quickgelu')"
        extra = f"; the architecture also sets {special}, which a CLIPTextModel lacks" if special else ""
        raise ConfigError(
            key,
            f"architecture '{model_name}' does not match the CLIPTextModel '{hf.file}' "
            f"(open_clip vs Hugging Face: {'; '.join(differ) or 'sizes agree'}{extra}){hint}",
        )


def read_pad_token_id(tokenizer_folder: Path | None, vocabulary: dict[str, int] | None) -> int | None:
    """The id of the pad token a Hugging Face CLIP tokenizer folder declares (``special_tokens_map.json``,
    else ``tokenizer_config.json``), looked up in ``vocabulary`` (HF token names); None when not declared."""
    if tokenizer_folder is None or vocabulary is None:
        return None
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        file = tokenizer_folder / name
        if not file.is_file():
            continue
        pad = read_json_object(file, PATH_KEY).get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str):
            if pad not in vocabulary:
                raise ConfigError(PATH_KEY, f"'{file}': pad_token '{pad}' is not in the CLIP vocabulary")
            return int(vocabulary[pad])
    return None


def _hf_vocabulary(tokenizer: Any) -> dict[str, int] | None:
    """open_clip's BPE vocabulary under Hugging Face's names of the special tokens (None if the tokenizer
    is not open_clip's ``SimpleTokenizer``)."""
    encoder = getattr(tokenizer, "encoder", None)
    if not isinstance(encoder, dict):
        return None
    return {_SPECIAL_NAMES.get(token, token): index for token, index in encoder.items()}


def check_vocabulary(
    tokenizer_folder: Path | None, vocabulary: dict[str, int] | None, key: str = PATH_KEY
) -> None:
    """Fail if the folder's ``vocab.json`` / ``added_tokens.json`` differ from open_clip's vocabulary."""
    if tokenizer_folder is None or vocabulary is None:
        return
    added = tokenizer_folder / "added_tokens.json"
    if added.is_file() and read_json_object(added, key):
        raise ConfigError(
            key,
            f"'{added}' adds tokens (e.g. textual-inversion embeddings) that open_clip's tokenizer cannot produce",
        )
    file = tokenizer_folder / "vocab.json"
    if not file.is_file():
        return
    theirs = read_json_object(file, key)
    if theirs != vocabulary:
        differ = sorted(set(theirs.items()) ^ set(vocabulary.items()), key=lambda item: item[1])
        raise ConfigError(
            key,
            f"'{file}' ({len(theirs)} tokens) differs from the CLIP BPE vocabulary of open_clip's tokenizer "
            f"({len(vocabulary)} tokens; e.g. {differ[:3]}): its token ids would not match",
        )


def _text_tower(name: str, config: dict[str, Any]) -> Any:
    """The architecture's text tower alone (no image tower), randomly initialised, float32."""
    try:
        from open_clip.model import _build_text_tower
    except ImportError:  # an open_clip without the helper: build the whole model, keep its text tower
        import open_clip

        return open_clip.create_model(name, pretrained=None, pretrained_image=False, pretrained_text=False)
    return _build_text_tower(
        int(config["embed_dim"]),
        dict(config.get("text_cfg", {})),
        quick_gelu=bool(config.get("quick_gelu", False)),
    )


def load_hf_clip_text(
    path: str | Path,
    model_name: str,
    model_config: str | Path | None = None,
    path_key: str = PATH_KEY,
    name_key: str = NAME_KEY,
) -> HFClipText:
    """Load a Stable Diffusion folder's ``CLIPTextModel`` (or such a folder itself) into the open_clip text
    encoder of architecture ``model_name``, strictly; errors name ``path_key`` / ``name_key``."""
    import open_clip

    folder, tokenizer_folder = find_text_encoder_folder(Path(path).expanduser(), path_key)
    weights = find_weights(folder, TRANSFORMERS_WEIGHT_NAMES)
    if weights is None:
        raise ConfigError(
            path_key,
            f"text encoder folder '{folder}' has no weights: expected one of {', '.join(TRANSFORMERS_WEIGHT_NAMES)}",
        )
    try:
        name, config = resolve_architecture(model_name, model_config, who="conditioner")
    except OpenClipError as error:
        raise ConfigError(name_key, str(error)) from None
    state = read_state_dict(weights, path_key)
    if not any(isinstance(k, str) and k.startswith(HF_PREFIX) for k in state):
        raise ConfigError(
            path_key,
            f"'{weights}' has no '{HF_PREFIX}*' tensors: not a Hugging Face CLIPTextModel state dict",
        )
    hf = read_hf_text_config(folder / "config.json", state, weights, path_key)
    check_architecture(hf, name, config, name_key)
    converted, missing, unexpected, ignored = convert_hf_clip_text_state_dict(state, hf.layers)
    if missing or unexpected:
        parts = [
            f"{label}: {names[:5]}{' ...' if len(names) > 5 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected))
            if names
        ]
        raise ConfigError(
            path_key, f"'{weights}' is not a complete CLIPTextModel state dict ({'; '.join(parts)})"
        )
    encoder = OpenClipTextEncoder(_text_tower(name, config))
    result = encoder.load_state_dict(converted, strict=False)
    if result.missing_keys or result.unexpected_keys:  # e.g. extra parameters of a custom attention block
        raise ConfigError(
            name_key,
            f"the text tower of '{name}' does not have the layout of a CLIPTextModel (not loaded: "
            f"{result.missing_keys[:5]}; no place for: {result.unexpected_keys[:5]})",
        )
    encoder.requires_grad_(False).eval()
    tokenizer = open_clip.get_tokenizer(name)
    vocabulary = _hf_vocabulary(tokenizer)
    check_vocabulary(tokenizer_folder, vocabulary, path_key)
    return HFClipText(
        encoder=encoder,
        tokenizer=tokenizer,
        name=name,
        folder=folder,
        weights=weights,
        pad_token_id=read_pad_token_id(tokenizer_folder, vocabulary),
        ignored=ignored,
    )
