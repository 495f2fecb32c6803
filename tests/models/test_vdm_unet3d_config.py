"""``model=vdm_unet3d``: parameter counts of every size (pinned, and equal to the closed form of the model
docstring), the per-family recipe sizes, and config values that fail at start naming their key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.conftest import TINY_DATA, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.models.vdm_unet3d import VDM_SIZES, VDMUNet3D

#: the input side each size is built for (the paper's 16x64x64 clips; 9x128x128 for t2v_9x128; tiny: 16x16)
INPUT_SIZE = {"tiny": 16, "t2v_9x128": 128}

#: size -> (all trainable parameters, those of the temporal attentions), 3 input channels, unconditional,
#: learn_sigma false, Shaw positions with R = 32
PINNED = {
    "tiny": (777_891, 75_392),
    "ucf101": (1_143_935_491, 127_130_624),
    "bair": (138_336_131, 14_586_880),
    "kinetics": (1_141_836_291, 127_130_624),
    "t2v_small": (294_589_699, 31_912_448),
    "t2v_large": (1_143_935_491, 127_130_624),
    "t2v_9x128": (1_146_918_147, 127_263_744),
}
#: the spec's estimates for its reference build (vidgen/shared VDM spec, Sec. 1.2), in millions: all, temporal
SPEC_ESTIMATES = {
    "ucf101": (1143.9, 127.1),
    "bair": (138.3, 14.6),
    "kinetics": (1141.8, 127.1),
    "t2v_small": (294.6, 31.9),
    "t2v_9x128": (1146.9, 127.3),
}


def meta_model(size: str, **kwargs: object) -> VDMUNet3D:
    with torch.device("meta"):
        return VDMUNet3D(size=size, input_size=INPUT_SIZE.get(size, 64), **kwargs)


def closed_form(model: VDMUNet3D) -> int:
    """The count the model docstring gives, from the model's own hyperparameters."""
    base, e, c = model.base_channels, model.emb_dim, model.in_channels
    levels = len(model.channel_mult)

    def res(cin: int, cout: int) -> int:
        skip = cin * cout + cout if cin != cout else 0
        return 2 * cin + 9 * cin * cout + cout + e * cout + cout + 2 * cout + 9 * cout * cout + cout + skip

    def attention(width: int) -> int:
        return 4 * width * width + 6 * width

    def temporal(width: int) -> int:
        heads, d = width // model.head_dim, model.head_dim
        position = {
            "shaw": 2 * (2 * model.relative_max_distance + 1) * d,
            "t5_bias": model.t5_num_buckets * heads,
        }.get(model.temporal_pos, 0)
        return attention(width) + position

    def attentions(width: int, side: int) -> int:
        spatial = attention(width) if side in model.attention_resolutions else 0
        return spatial + (temporal(width) if side in model.temporal_attention_resolutions else 0)

    f, layers = model.frequency_dim, model.emb_mlp_layers
    total = 9 * c * base + base + f * e + e + (layers - 1) * (e * e + e)
    width, side, skips = base, model.input_size, [base]
    for level, mult in enumerate(model.channel_mult):
        for _ in range(model.num_res_blocks):
            total += res(width, base * mult) + attentions(base * mult, side)
            width = base * mult
            skips.append(width)
        if level < levels - 1:
            total += 9 * width * width + width
            skips.append(width)
            side //= 2
    total += 2 * res(width, width) + attention(width) + temporal(width)
    for level in reversed(range(levels)):
        out = base * model.channel_mult[level]
        for i in range(model.num_res_blocks + 1):
            total += res(width + skips.pop(), out) + attentions(out, side)
            if level > 0 and i == model.num_res_blocks:
                total += 9 * out * out + out
            width = out
        side *= 2
    total += 2 * base + 9 * base * model.out_channels + model.out_channels
    if model.text_dim:
        d = model.text_dim
        total += 3 * d * d + 4 * d + d * e + e
    if model.num_classes:
        total += (model.num_classes + 1) * e
    return total


@pytest.mark.parametrize("size", list(VDM_SIZES))
def test_parameter_counts_are_pinned_and_match_the_closed_form(size: str) -> None:
    model = meta_model(size)
    temporal = sum(p.numel() for layer in model.temporal_layers() for p in layer.parameters())
    assert (model.num_params(), temporal) == PINNED[size]
    assert model.num_params() == closed_form(model)
    if size in SPEC_ESTIMATES:  # the spec's reference build, to its printed precision
        assert (round(model.num_params() / 1e6, 1), round(temporal / 1e6, 1)) == SPEC_ESTIMATES[size]


@pytest.mark.parametrize(
    "switches",
    [
        {"temporal_pos": "t5_bias"},
        {"temporal_pos": "rope"},
        {"temporal_pos": "none"},
        {"temporal_attention_resolutions": []},
        {"temporal_attention_resolutions": [64, 32]},
        {"text_dim": 1024},
        {"num_classes": 101},
        {"learn_sigma": True, "in_channels": 4},
        {"frequency_dim": 320, "emb_mlp_layers": 1},
    ],
)
def test_switches_cost_what_the_docstring_says(switches: dict) -> None:
    model = meta_model("ucf101", **switches)
    assert model.num_params() == closed_form(model)


def test_the_text_pool_adds_4_2m_at_bert_large_width() -> None:
    """VDM's text models pool BERT-large token states (width 1024) into the embedding."""
    assert meta_model("t2v_large", text_dim=1024).num_params() - PINNED["t2v_large"][0] == 4_199_424


# ------------------------------------------------------------------------------------ the config


@pytest.mark.parametrize(
    ("overrides", "size"),
    [
        ([], "tiny"),
        (["data=ucf101"], "ucf101"),
        (["data=taichi"], "ucf101"),
        (["data=webvid"], "t2v_large"),
        (["data=ucf101", "recipe=none"], "ucf101"),
        (["data=ucf101", "model.size=bair"], "bair"),
    ],
)
def test_the_recipe_gives_the_size_of_this_family(overrides: list[str], size: str, tmp_path: Path) -> None:
    cfg = compose_config(["model=vdm_unet3d", *overrides], run_dir=tmp_path)
    assert cfg.model.size == size


def test_the_synthetic_recipe_builds_the_tiny_model(tmp_path: Path) -> None:
    cfg = compose_config(["model=vdm_unet3d"], run_dir=tmp_path)
    OmegaConf.resolve(cfg)
    validate_config(cfg)
    model = instantiate_node(cfg.model)
    assert isinstance(model, VDMUNet3D) and model.size == "tiny" and model.input_size == 16
    # 3 pixel channels; the demo recipe's diffusion has a fixed variance: C outputs
    assert not model.learn_sigma and model.out_channels == 3
    assert model.num_params() == PINNED["tiny"][0]
    # with Latte's diffusion (a learned variance) 2C outputs: 3 more output channels of the last 3x3 conv
    cfg = compose_config(["model=vdm_unet3d", "diffusion=latte"], run_dir=tmp_path)
    model = instantiate_node(cfg.model)
    assert model.learn_sigma and model.out_channels == 6
    assert model.num_params() == PINNED["tiny"][0] + 9 * 32 * 3 + 3


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.size=huge", "model.size"),
        ("model.temporal_pos=absolute", "model.temporal_pos"),
        ("model.channel_mult=[1,0]", "model.channel_mult"),
        ("model.channel_mult=2", "model.channel_mult"),
        ("model.attention_resolutions=[8,-4]", "model.attention_resolutions"),
        ("model.num_res_blocks=0", "model.num_res_blocks"),
        ("model.head_dim=12", "model.head_dim"),
        ("model.norm_groups=7", "model.norm_groups"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.emb_mlp_layers=0", "model.emb_mlp_layers"),
        ("model.relative_max_distance=0", "model.relative_max_distance"),
        ("data.resolution=18", "model.input_size"),
        (
            "model.temporal_pos=rope model.head_dim=5 model.base_channels=40 model.norm_groups=5",
            "model.head_dim",
        ),
        ("model.temporal_pos=t5_bias model.t5_num_buckets=7", "model.t5_num_buckets"),
        ("model.temporal_pos=t5_bias model.relative_max_distance=4", "model.relative_max_distance"),
    ],
)
def test_a_bad_value_fails_at_start_naming_its_key(override: str, key: str, tmp_path: Path) -> None:
    overrides = ["model=vdm_unet3d", *TINY_DATA, "model.channel_mult=[1,2,2]", *override.split()]
    cfg = compose_config(overrides, run_dir=tmp_path)
    validate_config(cfg)  # types are fine; the constructor checks the values
    with pytest.raises(ConfigError) as info:
        instantiate_node(cfg.model)
    assert info.value.key == key, str(info.value)


def test_an_unknown_key_and_a_bad_text_pool_name_their_keys(tmp_path: Path) -> None:
    cfg = compose_config(["model=vdm_unet3d", "+model.n_layers=3"], run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == "model.n_layers"
    with pytest.raises(ConfigError) as info:
        VDMUNet3D(size="tiny", input_size=16, text_dim=20, text_pool_heads=8)
    assert info.value.key == "model.text_pool_heads"
