"""A local Stable Diffusion 1.x folder, tiny: a diffusers-format folder (model_index.json, unet/, vae/,
text_encoder/, tokenizer/, scheduler/) written here, with a tiny ``UNet2DConditionModel`` and ``AutoencoderKL``
(``save_pretrained``) and a tiny Hugging Face ``CLIPTextModel`` written by hand in its real on-disk layout
(config.json + model.safetensors, the real key names spelled out below). Each component is loaded through
vidgen's own code paths and compared with what was written: the U-Net with ``load_unet`` (pipeline folder,
U-Net folder, single diffusers-layout file, single original LDM file), the VAE with the SD-VAE autoencoder,
the text encoder with the text conditioner (per-token states against a plain-torch CLIPTextModel forward)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.conftest import compose_config
from tests.stable_diffusion_folder import inspect_stable_diffusion_folder
from tests.tiny_open_clip import forbid_open_clip_downloads
from vidgen.conditioning import TextConditioner, build_conditioner
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.models.stable_diffusion import LDM_UNET_PREFIX, SD1_UNET_CONFIG, load_unet

UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 2,
    "norm_num_groups": 4,
}
VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [8, 16],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "sample_size": 16,
}
# the tiny CLIPTextModel (Stable Diffusion 1.x's is 768 wide, 12 layers, 12 heads, 3072 MLP, QuickGELU)
VOCAB, WIDTH, LAYERS, HEADS, MLP, CONTEXT = 49408, 32, 2, 2, 128, 77
HF_TEXT_CONFIG: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": VOCAB,
    "hidden_size": WIDTH,
    "intermediate_size": MLP,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "max_position_embeddings": CONTEXT,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 16,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "torch_dtype": "float32",
}
# the open_clip architecture with that text tower (the model-config JSON is registered under its file stem)
ARCH = "vidgen-test-tiny-sd-clip"
ARCH_CONFIG: dict[str, Any] = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {
        "context_length": CONTEXT,
        "vocab_size": VOCAB,
        "width": WIDTH,
        "heads": HEADS,
        "layers": LAYERS,
    },
}
EOT = 49407
CAPTIONS = ["a red square moving left", "a blue circle", ""]
MAX_LENGTH = 16


@pytest.fixture(autouse=True)
def forbid_downloads(monkeypatch):
    forbid_open_clip_downloads(monkeypatch)


# --------------------------------------------------------------------------------------------- writing


def hf_text_encoder_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A CLIPTextModel state dict under its real transformers names, from seeded random tensors."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    state = {
        "text_model.embeddings.token_embedding.weight": rand(VOCAB, WIDTH, scale=0.5),
        "text_model.embeddings.position_embedding.weight": rand(CONTEXT, WIDTH, scale=0.5),
        "text_model.embeddings.position_ids": torch.arange(CONTEXT)[None],  # saved by older transformers
        "text_model.final_layer_norm.weight": 1 + rand(WIDTH, scale=0.1),
        "text_model.final_layer_norm.bias": rand(WIDTH, scale=0.1),
    }
    for i in range(LAYERS):
        p = f"text_model.encoder.layers.{i}."
        state[p + "layer_norm1.weight"] = 1 + rand(WIDTH, scale=0.1)
        state[p + "layer_norm1.bias"] = rand(WIDTH, scale=0.1)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            state[p + f"self_attn.{proj}.weight"] = rand(WIDTH, WIDTH)
            state[p + f"self_attn.{proj}.bias"] = rand(WIDTH, scale=0.1)
        state[p + "layer_norm2.weight"] = 1 + rand(WIDTH, scale=0.1)
        state[p + "layer_norm2.bias"] = rand(WIDTH, scale=0.1)
        state[p + "mlp.fc1.weight"] = rand(MLP, WIDTH)
        state[p + "mlp.fc1.bias"] = rand(MLP, scale=0.1)
        state[p + "mlp.fc2.weight"] = rand(WIDTH, MLP)
        state[p + "mlp.fc2.bias"] = rand(WIDTH, scale=0.1)
    return state


def hf_vocabulary() -> dict[str, int]:
    """CLIP's BPE vocabulary as SD's tokenizer/vocab.json spells it (special tokens <|startoftext|> ...)."""
    encoder = open_clip.tokenizer.SimpleTokenizer().encoder
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    return {names.get(token, token): index for token, index in encoder.items()}


def write_text_encoder(folder: Path, state: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, str(folder / "model.safetensors"))


def write_tokenizer(folder: Path, pad_token: str = "<|endoftext|>") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(hf_vocabulary()))
    special = {
        "bos_token": {"content": "<|startoftext|>", "lstrip": False, "rstrip": False},
        "eos_token": {"content": "<|endoftext|>", "lstrip": False, "rstrip": False},
        "unk_token": {"content": "<|endoftext|>", "lstrip": False, "rstrip": False},
        "pad_token": pad_token,
    }
    (folder / "special_tokens_map.json").write_text(json.dumps(special))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": CONTEXT}))


def tiny_unet(seed: int = 0) -> Any:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    model = UNet2DConditionModel(**UNET_CONFIG)
    with torch.no_grad():  # diffusers zero-initialises some output convs: make every tensor distinctive
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def write_sd_folder(root: Path) -> dict[str, Any]:
    """A tiny Stable Diffusion pipeline folder; returns what was written."""
    from diffusers import AutoencoderKL, DDPMScheduler

    unet = tiny_unet()
    unet.save_pretrained(root / "unet")
    torch.manual_seed(1)
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.save_pretrained(root / "vae")
    text_state = hf_text_encoder_state()
    write_text_encoder(root / "text_encoder", text_state, HF_TEXT_CONFIG)
    write_tokenizer(root / "tokenizer")
    DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        root / "scheduler"
    )
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMScheduler"],
    }
    (root / "model_index.json").write_text(json.dumps(index))
    return {"unet": unet.state_dict(), "vae": vae.state_dict(), "text": text_state}


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> tuple[Path, dict[str, Any], Path]:
    """(the Stable Diffusion folder, what was written, the open_clip architecture JSON)."""
    root = tmp_path_factory.mktemp("sd") / "stable-diffusion-tiny"
    written = write_sd_folder(root)
    arch = root.parent / f"{ARCH}.json"
    arch.write_text(json.dumps(ARCH_CONFIG))
    return root, written, arch


def assert_same_state(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name


# ------------------------------------------------------------------------------------------------ U-Net


def test_inspect_reports_the_components(sd, tmp_path):
    root, _, _ = sd
    report = inspect_stable_diffusion_folder(root)
    assert report["model_index"]
    for name in ("unet", "vae", "text_encoder"):
        assert report["components"][name]["exists"] and report["components"][name]["weights"], name
    assert report["components"]["unet"]["weights"].endswith("diffusion_pytorch_model.safetensors")
    assert report["components"]["text_encoder"]["weights"].endswith("model.safetensors")
    assert report["components"]["tokenizer"]["config"].endswith("tokenizer_config.json")
    assert report["components"]["scheduler"]["config"].endswith("scheduler_config.json")
    empty = inspect_stable_diffusion_folder(tmp_path)
    assert not empty["model_index"] and not any(c["exists"] for c in empty["components"].values())


def test_unet_from_pipeline_folder_and_unet_folder(sd):
    root, written, _ = sd
    for path, subfolder in (
        (root, "unet"),
        (root / "unet", "unet"),
        (str(root), None),
        (root / "unet", None),
    ):
        unet = load_unet(path, subfolder)
        assert type(unet).__name__ == "UNet2DConditionModel" and not unet.training
        assert_same_state(unet, written["unet"])
        assert all(p.requires_grad and p.dtype == torch.float32 for p in unet.parameters())
    # the loaded model computes what the saved one does
    reference = tiny_unet()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t, text).sample, reference.eval()(x, t, text).sample)


def test_unet_missing_component_or_weights_names_them(sd, tmp_path):
    root, _, _ = sd
    partial = tmp_path / "partial"
    shutil.copytree(root / "vae", partial / "vae")
    shutil.copy(root / "model_index.json", partial)
    with pytest.raises(ConfigError) as info:
        load_unet(partial)
    assert info.value.key == "model.pretrained_path"
    assert f"Stable Diffusion folder '{partial}' has no unet/config.json" in str(info.value)

    (partial / "unet").mkdir()
    shutil.copy(root / "unet" / "config.json", partial / "unet")
    with pytest.raises(ConfigError, match=r"diffusion_pytorch_model\.safetensors") as info:
        load_unet(partial)
    assert info.value.key == "model.pretrained_path" and str(partial / "unet") in str(info.value)

    with pytest.raises(ConfigError, match="does not exist") as info:
        load_unet(tmp_path / "nowhere", key="model.unet_path")
    assert info.value.key == "model.unet_path"
    (tmp_path / "empty").mkdir()
    for subfolder in ("unet", None):
        with pytest.raises(ConfigError, match="neither"):
            load_unet(tmp_path / "empty", subfolder=subfolder)


def test_unet_single_diffusers_file(sd, tmp_path):
    root, written, _ = sd
    # the weights file inside unet/ (its config.json beside it)
    assert_same_state(load_unet(root / "unet" / "diffusion_pytorch_model.safetensors"), written["unet"])
    # a .bin elsewhere, its config.json in unet/ beside it; an fp16 copy is read back as float32
    single = tmp_path / "single"
    (single / "unet").mkdir(parents=True)
    shutil.copy(root / "unet" / "config.json", single / "unet")
    half = {k: v.half() for k, v in written["unet"].items()}
    torch.save(half, single / "my_unet.bin")
    loaded = load_unet(single / "my_unet.bin")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert_same_state(loaded, {k: v.float() for k, v in half.items()})
    # without a config.json: say where it must be
    lone = tmp_path / "lone"
    lone.mkdir()
    save_file(written["unet"], str(lone / "unet.safetensors"))
    with pytest.raises(ConfigError) as info:
        load_unet(lone / "unet.safetensors")
    assert info.value.key == "model.pretrained_path" and str(lone / "config.json") in str(info.value)


def test_unet_loading_is_strict(sd, tmp_path):
    root, written, _ = sd
    folder = tmp_path / "strict"
    folder.mkdir()
    shutil.copy(root / "unet" / "config.json", folder)
    extra = dict(written["unet"], **{"extra.weight": torch.zeros(1)})
    save_file(extra, str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ConfigError, match=r"unexpected 1: extra\.weight"):
        load_unet(folder)
    fewer = {k: v for k, v in written["unet"].items() if k != "conv_in.bias"}
    save_file(fewer, str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ConfigError, match=r"missing 1: conv_in\.bias"):
        load_unet(folder)
    other = dict(written["unet"], **{"conv_in.bias": torch.zeros(3)})
    save_file(other, str(folder / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ConfigError, match=r"other shape 1: conv_in\.bias \(3,\) vs \(8,\)"):
        load_unet(folder)


# LDM (CompVis) names of a diffusers U-Net; written out for the tiny config (diffusers ships only the other way)
_RESNET_TO_LDM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_TOP_TO_LDM = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def diffusers_to_ldm(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The original LDM names of a diffusers U-Net state dict (SD 1.x layout: input_blocks / middle_block /
    output_blocks, TimestepEmbedSequential children ``.0`` resnet, ``.1`` SpatialTransformer)."""
    per = config["layers_per_block"] + 1  # LDM input / output blocks per diffusers block
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        module, leaf = name.rsplit(".", 1)
        if module in _TOP_TO_LDM:
            new = f"{_TOP_TO_LDM[module]}.{leaf}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", name):
            b, j, sub, leaf = int(m[1]), int(m[2]), m[3], m[4]
            new = f"input_blocks.{1 + b * per + j}.0.{_RESNET_TO_LDM[sub]}.{leaf}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name):
            new = f"input_blocks.{1 + int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", name):
            new = f"input_blocks.{(int(m[1]) + 1) * per}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(\w+)\.(\w+)", name):
            new = f"middle_block.{2 * int(m[1])}.{_RESNET_TO_LDM[m[2]]}.{m[3]}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", name):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(\w+)", name):
            b, j, sub, leaf = int(m[1]), int(m[2]), m[3], m[4]
            new = f"output_blocks.{b * per + j}.0.{_RESNET_TO_LDM[sub]}.{leaf}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", name):
            new = f"output_blocks.{int(m[1]) * per + int(m[2])}.1.{m[3]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", name):
            b = int(m[1])
            child = 2 if config["up_block_types"][b].startswith("CrossAttn") else 1
            new = f"output_blocks.{b * per + per - 1}.{child}.conv.{m[2]}"
        else:
            raise KeyError(f"no LDM name for {name}")
        out[LDM_UNET_PREFIX + new] = value.clone()
    assert len(out) == len(state)
    return out


def test_unet_single_ldm_file(sd, tmp_path):
    root, written, _ = sd
    ldm = diffusers_to_ldm(written["unet"], UNET_CONFIG)
    assert f"{LDM_UNET_PREFIX}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in ldm
    assert f"{LDM_UNET_PREFIX}output_blocks.1.1.conv.weight" in ldm  # the upsampler of a plain up block
    # the rest of a full checkpoint (VAE, text encoder) is ignored
    others = {
        "first_stage_model.decoder.conv_in.weight": torch.randn(4, 4, 3, 3),
        "cond_stage_model.x": torch.ones(2),
    }
    folder = tmp_path / "ldm"
    folder.mkdir()
    torch.save({"state_dict": {**ldm, **others}, "global_step": 7}, folder / "tiny-sd.ckpt")
    save_file({**ldm, **others}, str(folder / "tiny-sd.safetensors"))
    # without a U-Net config.json beside it: vidgen's SD 1.x config, which this tiny U-Net does not fit
    with pytest.raises(ConfigError) as info:
        load_unet(folder / "tiny-sd.ckpt")
    assert info.value.key == "model.pretrained_path" and "config.json" in str(info.value)
    shutil.copy(root / "unet" / "config.json", folder)
    for name in ("tiny-sd.ckpt", "tiny-sd.safetensors"):
        assert_same_state(load_unet(folder / name), written["unet"])
    # an LDM U-Net tensor without a place in the diffusers U-Net is an error, not silently dropped
    save_file(
        {**ldm, f"{LDM_UNET_PREFIX}input_blocks.1.2.weight": torch.ones(2)}, str(folder / "extra.safetensors")
    )
    with pytest.raises(ConfigError, match=r"input_blocks\.1\.2\.weight"):
        load_unet(folder / "extra.safetensors")


def test_builtin_sd1_config_is_stable_diffusion_1():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(SD1_UNET_CONFIG)
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # SD 1.x's U-Net


# -------------------------------------------------------------------------------------------------- VAE


def test_vae_from_the_sd_folder(sd):
    from vidgen.autoencoders import build_autoencoder

    root, written, _ = sd
    for subfolder in ("vae", None):  # None: the loader finds vae/ in a pipeline folder
        vae = build_autoencoder(
            "sd_vae",
            latent_channels=4,
            downsample=2,
            scaling_factor=0.18215,
            path=str(root),
            subfolder=subfolder,
        )
        assert_same_state(vae.vae, written["vae"])


# --------------------------------------------------------------------------------------------- text encoder


def hf_clip_reference(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """CLIPTextModel's ``last_hidden_state`` computed from its HF-named weights in plain torch (pre-LN causal
    transformer, QuickGELU MLP, final LayerNorm), independent of open_clip."""

    def ln(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, (WIDTH,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-5)

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    batch, length = tokens.shape
    x = state["text_model.embeddings.token_embedding.weight"][tokens]
    x = x + state["text_model.embeddings.position_embedding.weight"][:length]
    causal = torch.full((length, length), float("-inf")).triu(1)
    head = WIDTH // HEADS
    for i in range(LAYERS):
        p = f"text_model.encoder.layers.{i}."
        h = ln(x, p + "layer_norm1")
        q, k, v = (
            linear(h, p + f"self_attn.{n}_proj").view(batch, length, HEADS, head).transpose(1, 2)
            for n in "qkv"
        )
        attention = torch.softmax(q @ k.transpose(-1, -2) * head**-0.5 + causal, dim=-1)
        merged = (attention @ v).transpose(1, 2).reshape(batch, length, WIDTH)
        x = x + linear(merged, p + "self_attn.out_proj")
        h = linear(ln(x, p + "layer_norm2"), p + "mlp.fc1")
        x = x + linear(h * torch.sigmoid(1.702 * h), p + "mlp.fc2")
    return ln(x, "text_model.final_layer_norm")


def sd_tokens(captions: list[str], length: int = MAX_LENGTH) -> torch.Tensor:
    """Token ids as SD 1.x's tokenizer gives them: BOS, BPE ids, EOS, then EOS as padding."""
    tokens = open_clip.tokenizer.SimpleTokenizer()(captions, context_length=length)
    eot = (tokens == EOT).int().argmax(dim=1)
    return tokens.masked_fill(torch.arange(length)[None] > eot[:, None], EOT)


def make_text(path: Path, arch: Path | str, **kwargs: Any) -> TextConditioner:
    conditioner = build_conditioner(
        "text",
        drop_prob=0.1,
        text_dim=WIDTH,
        path=str(path),
        model_name=str(arch),
        max_length=kwargs.pop("max_length", MAX_LENGTH),
        **kwargs,
    )
    assert isinstance(conditioner, TextConditioner)
    return conditioner


@pytest.fixture(scope="module")
def text_conditioner(sd) -> TextConditioner:
    root, _, arch = sd
    return make_text(root, arch)


def test_text_encoder_weights_come_from_the_sd_folder(sd, text_conditioner):
    _, written, _ = sd
    state = written["text"]
    encoder = text_conditioner.encoder
    assert text_conditioner.source == "hf_clip"
    assert text_conditioner.ignored_weights == ["text_model.embeddings.position_ids"]
    expected = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
    }
    for i in range(LAYERS):
        hf, oc = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            expected[f"{oc}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{hf}self_attn.{n}_proj.{kind}"] for n in "qkv"], dim=0
            )
            for ours, theirs in (
                ("ln_1", "layer_norm1"),
                ("attn.out_proj", "self_attn.out_proj"),
                ("ln_2", "layer_norm2"),
                ("mlp.c_fc", "mlp.fc1"),
                ("mlp.c_proj", "mlp.fc2"),
            ):
                expected[f"{oc}{ours}.{kind}"] = state[f"{hf}{theirs}.{kind}"]
    # every tensor of the encoder was loaded from the file, and nothing else is in it (no image tower, no
    # text projection: nothing randomly initialised)
    assert_same_state(encoder, expected)
    assert all(not p.requires_grad for p in text_conditioner.parameters())


def test_text_states_equal_a_clip_text_model_forward(sd, text_conditioner):
    _, written, _ = sd
    assert text_conditioner.pad_token_id == EOT  # tokenizer/special_tokens_map.json: <|endoftext|>
    cond = text_conditioner({"caption": CAPTIONS})
    tokens = sd_tokens(CAPTIONS)
    with torch.no_grad():
        expected = hf_clip_reference(written["text"], tokens)
    torch.testing.assert_close(cond.text, expected, atol=1e-5, rtol=1e-5)
    eot = (tokens == EOT).int().argmax(dim=1)
    assert torch.equal(cond.text_mask, torch.arange(MAX_LENGTH)[None] <= eot[:, None])
    assert torch.equal(cond.pooled_text, cond.text[torch.arange(3), eot])
    torch.testing.assert_close(text_conditioner.null(1).text[0], expected[2], atol=1e-5, rtol=1e-5)


def test_padding_with_zeros_changes_only_the_states_after_eot(sd, text_conditioner):
    root, written, arch = sd
    zero = make_text(root, arch, pad_token="zero")
    assert zero.pad_token_id == 0
    a, b = text_conditioner({"caption": CAPTIONS[:2]}), zero({"caption": CAPTIONS[:2]})
    assert torch.equal(a.text_mask, b.text_mask)
    torch.testing.assert_close(a.pooled_text, b.pooled_text, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.text[a.text_mask], b.text[b.text_mask], atol=1e-6, rtol=0)
    assert not torch.allclose(a.text[~a.text_mask], b.text[~b.text_mask], atol=1e-3)
    tokens = open_clip.tokenizer.SimpleTokenizer()(CAPTIONS[:2], context_length=MAX_LENGTH)  # zero padded
    torch.testing.assert_close(b.text, hf_clip_reference(written["text"], tokens), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError) as info:
        make_text(root, arch, pad_token="pad")
    assert info.value.key == "conditioner.pad_token"


def test_text_encoder_folder_alone_and_declared_padding(sd, tmp_path):
    root, _, arch = sd
    alone = tmp_path / "clip_text"
    shutil.copytree(root / "text_encoder", alone)
    conditioner = make_text(alone, arch)
    assert conditioner.pad_token_id == EOT  # no tokenizer/: SD 1.x's padding
    # an SD 2.x-style tokenizer pads with "!" (id 0), as open_clip does
    bang = tmp_path / "sd_bang"
    shutil.copytree(root / "text_encoder", bang / "text_encoder")
    write_tokenizer(bang / "tokenizer", pad_token="!")
    assert make_text(bang, arch).pad_token_id == 0
    # the text_encoder/ folder of an SD folder uses its sibling tokenizer/
    assert make_text(bang / "text_encoder", arch).pad_token_id == 0


def test_text_encoder_errors_name_the_key_and_file(sd, tmp_path):
    root, written, arch = sd

    def fails(path: Path, key: str, text: str, model_name: str | Path = arch) -> None:
        with pytest.raises(ConfigError) as info:
            make_text(path, model_name)
        assert info.value.key == key and text in str(info.value), str(info.value)

    no_text = tmp_path / "no_text"
    shutil.copytree(root / "unet", no_text / "unet")
    fails(no_text, "conditioner.path", "has no text_encoder/config.json")
    (tmp_path / "not_sd").mkdir()
    fails(tmp_path / "not_sd", "conditioner.path", "neither")

    def variant(name: str, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
        folder = tmp_path / name
        write_text_encoder(folder / "text_encoder", state, config)
        return folder

    no_weights = tmp_path / "no_weights" / "text_encoder"
    no_weights.mkdir(parents=True)
    (no_weights / "config.json").write_text(json.dumps(HF_TEXT_CONFIG))
    fails(no_weights.parent, "conditioner.path", "model.safetensors")
    fewer = {
        k: v for k, v in written["text"].items() if k != "text_model.encoder.layers.1.self_attn.k_proj.bias"
    }
    fails(variant("fewer", fewer, HF_TEXT_CONFIG), "conditioner.path", "layers.1.self_attn.k_proj.bias")
    extra = dict(written["text"], **{"text_model.encoder.layers.0.extra.weight": torch.ones(2)})
    fails(variant("extra", extra, HF_TEXT_CONFIG), "conditioner.path", "layers.0.extra.weight")
    # the architecture must match the CLIPTextModel: activation, heads, widths
    gelu = variant("gelu", written["text"], {**HF_TEXT_CONFIG, "hidden_act": "gelu"})
    fails(gelu, "conditioner.model_name", "quick_gelu / hidden_act: True vs False")
    heads = variant("heads", written["text"], {**HF_TEXT_CONFIG, "num_attention_heads": 4})
    fails(heads, "conditioner.model_name", "heads / num_attention_heads: 2 vs 4")
    fails(root, "conditioner.model_name", "width / hidden_size: 512 vs 32", model_name="ViT-B-32-quickgelu")
    wrong = variant("wrong_size", written["text"], {**HF_TEXT_CONFIG, "hidden_size": 64})
    fails(wrong, "conditioner.path", "hidden_size 64 (weights: 32)")
    # a tokenizer whose ids differ from open_clip's (e.g. added tokens) is refused
    added = tmp_path / "added"
    shutil.copytree(root / "text_encoder", added / "text_encoder")
    write_tokenizer(added / "tokenizer")
    (added / "tokenizer" / "added_tokens.json").write_text(json.dumps({"<cat-toy>": 49408}))
    fails(added, "conditioner.path", "added_tokens.json")
    vocab = json.loads((added / "tokenizer" / "vocab.json").read_text())
    vocab["hello</w>"], vocab["world</w>"] = vocab["world</w>"], vocab["hello</w>"]
    (added / "tokenizer" / "added_tokens.json").unlink()
    (added / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    fails(added, "conditioner.path", "vocab.json")


def test_sd_folder_through_the_config(sd, tmp_path):
    root, written, arch = sd
    overrides = [
        "conditioner=text",
        f"paths.stable_diffusion={root}",
        "conditioner.path=${paths.stable_diffusion}",
        f"conditioner.model_name={arch}",
        f"conditioner.text_dim={WIDTH}",
        f"conditioner.max_length={MAX_LENGTH}",
    ]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    validate_config(cfg)
    assert cfg.conditioner.path == str(root)
    built = instantiate_node(cfg.conditioner)
    assert isinstance(built, TextConditioner) and built.source == "hf_clip"
    with torch.no_grad():
        expected = hf_clip_reference(written["text"], sd_tokens(CAPTIONS[:1]))
    torch.testing.assert_close(built({"caption": CAPTIONS[:1]}).text, expected, atol=1e-5, rtol=1e-5)
    default = compose_config(["conditioner=text"], run_dir=tmp_path / "run")
    assert str(default.paths.stable_diffusion).endswith("stable-diffusion-v1-5")


def test_open_clip_checkpoints_keep_open_clip_padding(sd, tmp_path):
    from tests.tiny_open_clip import save_tiny_open_clip

    checkpoint, config = save_tiny_open_clip(tmp_path)
    plain = make_text(checkpoint, config)
    assert plain.source == "open_clip" and plain.pad_token_id == 0 and plain.ignored_weights == []
    eot = make_text(checkpoint, config, pad_token="eot")
    assert eot.pad_token_id == EOT
    a, b = plain({"caption": CAPTIONS}), eot({"caption": CAPTIONS})
    assert torch.equal(a.text_mask, b.text_mask)
    torch.testing.assert_close(a.text[a.text_mask], b.text[b.text_mask], atol=1e-6, rtol=0)
    assert not torch.allclose(a.text[~a.text_mask], b.text[~b.text_mask], atol=1e-3)
    # a CLIPTextModel weights file given as if it were an open_clip checkpoint: point at its folder
    root, _, arch = sd
    with pytest.raises(ConfigError) as info:
        make_text(root / "text_encoder" / "model.safetensors", arch)
    assert info.value.key == "conditioner.path" and "give its folder" in str(info.value)
