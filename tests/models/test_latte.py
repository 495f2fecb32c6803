"""Latte (variant 1): parameter counts, shapes, adaLN-Zero init, space-time factorisation, config errors."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange

from tests.models.latte_helpers import randomize_zero_init, tiny_latte, video
from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.models import LATTE_SIZES, BlockRole, Latte, block_layout
from vidgen.nn import sincos_1d_table, sincos_2d_table

# A very small model for behaviour tests: 4x4 patch grid, 4 frames, float64 so zero/non-zero is exact.
SMALL = dict(size="tiny", depth=2, hidden_size=32, num_heads=2, in_channels=2, input_size=8, num_frames=4)


def small(**overrides) -> Latte:
    return tiny_latte(SMALL, **overrides)


T = torch.tensor([10, 700])

# ------------------------------------------------------------------------------------- parameter counts

PAPER_TABLE4 = {"S": "32.48M", "B": "129.54M", "L": "456.81M", "XL": "673.68M"}
EXACT = {"S": 32_480_672, "XL": 673_681_568}


def by_hand(depth: int, h: int) -> int:
    """The lead's count: blocks, x_embedder, t_embedder, final layer (C=4, p=2, learn_sigma)."""
    return (
        depth * (18 * h * h + 15 * h) + 17 * h + (256 * h + 2 * h + h * h) + (2 * h * h + 2 * h + 32 * h + 32)
    )


def meta_latte(**kwargs) -> Latte:
    with torch.device("meta"):
        return Latte(**kwargs)


@pytest.mark.parametrize("size", ["S", "B", "L", "XL"])
def test_param_counts_match_paper_table4(size):
    n = meta_latte(size=size).num_params()
    depth, hidden, _ = LATTE_SIZES[size]
    assert n == by_hand(depth, hidden)
    assert f"{math.floor(n / 1e4) / 100:.2f}M" == PAPER_TABLE4[size]
    if size in EXACT:
        assert n == EXACT[size]


def test_param_count_variants():
    base = meta_latte(size="S").num_params()
    assert meta_latte(size="S", num_classes=101).num_params() - base == 102 * 384
    # without learn_sigma the decoder emits p*p*C instead of p*p*2C features
    assert base - meta_latte(size="S", learn_sigma=False).num_params() == 384 * 16 + 16
    # frozen tables are neither parameters nor in the state dict
    model = small()
    assert model.num_params(trainable_only=False) == model.num_params()
    names = {n for n, _ in model.named_parameters()} | set(model.state_dict())
    assert not any("pos_embed" in n or "temp_embed" in n for n in names)


def test_dit_parameter_names():
    keys = set(small(num_classes=3).state_dict())
    for name in [
        "x_embedder.proj.weight",
        "t_embedder.mlp.0.weight",
        "t_embedder.mlp.2.weight",
        "y_embedder.embedding_table.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.attn.proj.weight",
        "blocks.1.mlp.fc1.weight",
        "blocks.1.mlp.fc2.weight",
        "blocks.1.adaLN_modulation.1.weight",
        "final_layer.linear.weight",
        "final_layer.adaLN_modulation.1.weight",
    ]:
        assert name in keys


def test_position_tables_are_sincos():
    model = small()
    torch.testing.assert_close(model.pos_embed, sincos_2d_table(32, 4, 4).double())
    torch.testing.assert_close(model.temp_embed, sincos_1d_table(32, 4).double())


def test_state_dict_round_trip():
    model = small(num_classes=3)
    randomize_zero_init(model)
    other = small(num_classes=3)
    other.load_state_dict(model.state_dict())  # strict: tables are recomputed, not loaded
    cond = Cond(labels=torch.tensor([0, 3]))
    x = video()
    torch.testing.assert_close(other(x, T, cond), model(x, T, cond))


# ------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", list(LATTE_SIZES))
@pytest.mark.parametrize("learn_sigma", [True, False])
def test_output_shape_every_size_meta(size, learn_sigma):
    with torch.device("meta"):
        model = Latte(size=size, learn_sigma=learn_sigma, num_classes=5)
        out = model(
            torch.empty(2, 4, 16, 32, 32), torch.empty(2), Cond(labels=torch.zeros(2, dtype=torch.long))
        )
    assert out.shape == (2, 8 if learn_sigma else 4, 16, 32, 32)
    assert model.out_channels == out.shape[1] and model.in_channels == 4 and model.num_frames == 16


@pytest.mark.parametrize("learn_sigma", [True, False])
@pytest.mark.parametrize("num_classes", [0, 4])
@pytest.mark.parametrize(("frames", "height", "width"), [(4, 8, 8), (1, 8, 8), (3, 12, 8), (6, 4, 4)])
def test_output_shape_tiny_real(learn_sigma, num_classes, frames, height, width):
    model = small(learn_sigma=learn_sigma, num_classes=num_classes)
    randomize_zero_init(model)
    cond = Cond(labels=torch.tensor([1, num_classes])) if num_classes else None
    out = model(video(f=frames, h=height, w=width), T, cond)
    assert out.shape == (2, 4 if learn_sigma else 2, frames, height, width)
    assert torch.isfinite(out).all() and out.abs().sum() > 0


def test_float_and_scalar_timesteps_and_bf16():
    model = small()
    randomize_zero_init(model)
    x = video()
    torch.testing.assert_close(model(x, torch.tensor([10.0, 10.0])), model(x, torch.tensor(10)))
    out = model.to(torch.bfloat16)(x.bfloat16(), T)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


# ------------------------------------------------------------------------------------ adaLN-Zero init


def test_zero_init_blocks_are_identity_and_output_is_zero():
    torch.manual_seed(0)
    model = Latte(size="tiny", in_channels=3, input_size=8, num_frames=4, num_classes=5)
    assert model.depth == 4
    c = torch.randn(2, model.hidden_size)
    for block in model.blocks:
        tokens = torch.randn(2, 3, 5, model.hidden_size)
        assert torch.equal(block(tokens, c), tokens)
    x = torch.randn(2, 3, 4, 8, 8)
    cond = Cond(labels=torch.tensor([0, 5]))
    assert torch.count_nonzero(model(x, T, cond)) == 0
    randomize_zero_init(model)
    assert torch.count_nonzero(model(x, T, cond)) > 0


def test_labels_and_timesteps_change_the_output():
    model = small(num_classes=3)
    randomize_zero_init(model)
    x = video()
    a = model(x, T, Cond(labels=torch.tensor([0, 0])))
    assert not torch.allclose(a, model(x, T, Cond(labels=torch.tensor([3, 3]))))  # null class differs
    assert not torch.allclose(a, model(x, T + 100, Cond(labels=torch.tensor([0, 0]))))


# ----------------------------------------------------------------------------------- factorisation


def influence(model: Latte, x: torch.Tensor, b: int, f: int, r: int, c: int) -> torch.Tensor:
    """Which input positions ``(B, F, H, W)`` influence output pixel ``(b, :, f, r, c)``."""
    x = x.clone().requires_grad_(True)
    model(x, T)[b, :, f, r, c].sum().backward()
    return x.grad.abs().sum(1) != 0


def test_layout_variant1_alternates():
    assert block_layout(1, 5) == [BlockRole.SPATIAL, BlockRole.TEMPORAL] * 2 + [BlockRole.SPATIAL]
    assert small().layout == [BlockRole.SPATIAL, BlockRole.TEMPORAL]


def test_spatial_block_never_mixes_frames():
    model = small()
    randomize_zero_init(model)
    model.blocks[1].adaLN_modulation.zero_()  # the temporal block becomes the identity
    touched = influence(model, video(), b=1, f=2, r=5, c=2)
    expected = torch.zeros_like(touched)
    expected[1, 2] = True  # the whole of frame 2 of sample 1, nothing else
    assert torch.equal(touched, expected)


def test_temporal_block_never_mixes_spatial_positions():
    model = small()
    randomize_zero_init(model)
    model.blocks[0].adaLN_modulation.zero_()  # the spatial block becomes the identity
    touched = influence(model, video(), b=1, f=2, r=5, c=2)
    expected = torch.zeros_like(touched)
    expected[1, :, 4:6, 2:4] = True  # the 2x2 patch holding pixel (5, 2), in every frame of sample 1
    assert torch.equal(touched, expected)


def test_full_model_mixes_all_positions_of_a_sample_only():
    model = small()
    randomize_zero_init(model)
    touched = influence(model, video(), b=0, f=3, r=0, c=7)
    assert touched[0].all() and not touched[1].any()


# ------------------------------------------------------------------------------ temporal position


def test_temporal_table_breaks_frame_permutation_equivariance():
    model = small(depth=4)
    randomize_zero_init(model)
    x = video()
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out, out_perm = model(x, T), model(x[:, :, perm], T)
        assert not torch.allclose(out_perm, out[:, :, perm], atol=1e-6)
        model.temp_embed.zero_()
        out, out_perm = model(x, T), model(x[:, :, perm], T)
    torch.testing.assert_close(out_perm, out[:, :, perm])


def test_temporal_table_added_once_before_first_temporal_block():
    model = small(depth=4)
    randomize_zero_init(model)
    inputs, outputs = {}, {}

    def record(i: int):
        def hook(module, args, out) -> None:  # returns None: must not replace the output
            inputs[i], outputs[i] = args[0], out

        return hook

    for i, block in enumerate(model.blocks):
        block.register_forward_hook(record(i))
    with torch.no_grad():
        model(video(), T)
    to_temporal = "b f s d -> b s f d"
    to_spatial = "b s f d -> b f s d"
    torch.testing.assert_close(inputs[1], rearrange(outputs[0], to_temporal) + model.temp_embed)
    torch.testing.assert_close(inputs[2], rearrange(outputs[1], to_spatial))
    torch.testing.assert_close(inputs[3], rearrange(outputs[2], to_temporal))  # no second table
    assert inputs[1].shape == (2, 16, 4, 32) and inputs[2].shape == (2, 4, 16, 32)


# ---------------------------------------------------------------------------- gradient checkpointing


def test_gradient_checkpointing_same_output_and_gradients():
    results = []
    for flag in (False, True):
        model = small(num_classes=3, gradient_checkpointing=flag).train()
        randomize_zero_init(model)
        x = video().requires_grad_(True)
        out = model(x, T, Cond(labels=torch.tensor([1, 2])))
        out.square().sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((out.detach(), x.grad.clone(), grads))
    (out0, gx0, g0), (out1, gx1, g1) = results
    torch.testing.assert_close(out1, out0)
    torch.testing.assert_close(gx1, gx0)
    assert g0.keys() == g1.keys()
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], msg=name)


# ----------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(size="M"), "model.size"),
        (dict(hidden_size=30, num_heads=4), "model.num_heads"),
        (dict(hidden_size=6, num_heads=3), "model.hidden_size"),
        (dict(depth=0), "model.depth"),
        (dict(num_heads=0), "model.num_heads"),
        (dict(patch_size=0), "model.patch_size"),
        (dict(input_size=9), "model.input_size"),
        (dict(in_channels=0), "model.in_channels"),
        (dict(num_frames=0), "model.num_frames"),
        (dict(mlp_ratio=0.0), "model.mlp_ratio"),
        (dict(num_classes=-1), "model.num_classes"),
        (dict(variant=-1), "model.variant"),  # variant 0 is DiT (all spatial)
        (dict(variant=5), "model.variant"),
    ],
)
def test_bad_config_raises_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        meta_latte(**{**SMALL, **kwargs})
    assert info.value.key == key and key in str(info.value)


def test_unknown_size_message_lists_sizes():
    with pytest.raises(ConfigError, match="unknown size 'M'; choose one of tiny, demo, S, B, L, XL"):
        meta_latte(size="M")


def test_variant_message_lists_the_variants():
    with pytest.raises(ConfigError, match=r"unknown value 5; choose one of 0, 1, 2, 3, 4"):
        meta_latte(variant=5)


def test_bad_inputs_raise_clear_errors():
    cond_model, plain = small(num_classes=3), small()
    with pytest.raises(ValueError, match="class-conditional"):
        cond_model(video(), T)
    with pytest.raises(ValueError, match="unconditional"):
        plain(video(), T, Cond(labels=torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="text"):
        plain(video(), T, Cond(pooled_text=torch.randn(2, 8)))
    with pytest.raises(ValueError, match="patch size"):
        plain(video(h=7), T)
    with pytest.raises(ValueError, match=r"\(B, 2, F, H, W\)"):
        plain(video(c=3), T)
    with pytest.raises(ValueError, match="t must have shape"):
        plain(video(), torch.tensor([1, 2, 3]))
