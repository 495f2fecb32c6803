"""Latte variants 1-4: block layouts, parameter counts against the paper, and the space-time factorisation of
every variant (the spatial part never mixes frames, the temporal part never mixes spatial positions),
checked with input gradients on tiny float64 models; FLOPs counting."""

from __future__ import annotations

import pytest
import torch

from tests.models.latte_helpers import TINY, randomize_zero_init, tiny_latte, video
from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.models import BlockRole, Latte, block_layout
from vidgen.models.latte import LATTE_SIZES, count_flops

S, T = BlockRole.SPATIAL, BlockRole.TEMPORAL
FA, FH = BlockRole.FACTORISED_ATTENTION, BlockRole.FACTORISED_HEADS

# 4 frames of 8x8 pixels, patch 2 -> a 4x4 patch grid; float64 so zero / non-zero is exact.
TIMES = torch.tensor([10, 700])


def tiny(**overrides) -> Latte:
    return tiny_latte(**overrides)


def meta(**kwargs) -> Latte:
    with torch.device("meta"):
        return Latte(**kwargs)


# ----------------------------------------------------------------------------------------- layouts


def test_block_layouts():
    assert block_layout(1, 4) == [S, T, S, T]
    assert block_layout(2, 4) == [S, S, T, T]
    assert block_layout(2, 5) == [S, S, S, T, T]  # the same blocks as variant 1 at depth 5
    assert block_layout(3, 3) == [FA, FA, FA]
    assert block_layout(4, 2) == [FH, FH]
    for depth in (2, 5, 28):
        assert sorted(r.value for r in block_layout(2, depth)) == sorted(
            r.value for r in block_layout(1, depth)
        )


def test_blocks_have_the_sub_layers_of_their_role():
    v3, v4 = tiny(variant=3, text_dim=6), tiny(variant=4)
    assert all(b.attn_temporal is not None and b.cross_attn is not None for b in v3.blocks)
    assert all(b.attn_temporal is None for b in v4.blocks)
    v1 = tiny(variant=1, text_dim=6)
    assert v1.blocks[0].cross_attn is not None and v1.blocks[1].cross_attn is None  # text in spatial blocks
    v2 = tiny(variant=2, depth=4, text_dim=6)
    assert [b.cross_attn is not None for b in v2.blocks] == [True, True, False, False]
    keys = set(v3.state_dict())
    assert "blocks.0.attn_temporal.qkv.weight" in keys and "blocks.0.cross_attn.kv_linear.weight" in keys
    assert "blocks.0.attn.qkv.weight" in keys and "blocks.0.adaLN_modulation.1.weight" in keys


# -------------------------------------------------------------------------------- parameter counts

H = 1152  # XL hidden size
OUTSIDE_BLOCKS = (4 * 4 * H + H) + (256 * H + H + H * H + H) + (2 * H * H + 2 * H + 32 * H + 32)


@pytest.mark.parametrize(
    ("size", "switches"),
    [(size, {}) for size in ("S", "B", "L", "XL")]
    + [
        ("S", {"patch_embed": "tube"}),
        ("S", {"injection": "tokens", "num_classes": 5}),
        ("S", {"temporal_position": "rope"}),
        ("S", {"text_dim": 64}),
        ("tiny", {"depth": 5}),
    ],
)
def test_variant2_has_variant1_parameter_count(size, switches):
    v1, v2 = (meta(size=size, variant=v, **switches).num_params() for v in (1, 2))
    assert v2 == v1


def test_xl_parameter_counts_against_paper_table3():
    counts = {v: meta(size="XL", variant=v).num_params() for v in (1, 2, 3, 4)}
    assert OUTSIDE_BLOCKS == 4_337_312
    assert counts[1] == counts[2] == counts[4] == 673_681_568 == OUTSIDE_BLOCKS + 28 * (18 * H * H + 15 * H)
    assert counts[3] == OUTSIDE_BLOCKS + 28 * (22 * H * H + 19 * H) == 822_446_240
    # the paper's 676.33M for variant 3 is nearest at 23 blocks (truncated to two decimals as in Table 4)
    v3_23 = meta(size="XL", variant=3, depth=23).num_params()
    assert v3_23 == 676_355_360 and int(v3_23 / 1e4) / 100 == 676.35


@pytest.mark.parametrize(
    ("size", "depth", "expected"), [("XL", None, 23), ("tiny", None, 3), ("S", None, 10), ("XL", 12, 10)]
)
def test_match_params_of_picks_the_depth_nearest_the_reference_count(size, depth, expected):
    """``match_params_of=1``: variant 3 at the depth whose count is nearest variant 1's at ``depth``."""
    matched = meta(size=size, depth=depth, variant=3, match_params_of=1)
    reference = meta(size=size, depth=depth, variant=1).num_params()
    assert matched.depth == expected and matched.reference_depth == (depth or LATTE_SIZES[size].depth)
    gap = abs(matched.num_params() - reference)
    for other in (expected - 1, expected + 1):
        assert abs(meta(size=size, depth=other, variant=3).num_params() - reference) > gap
    assert meta(size=size, depth=depth, variant=1, match_params_of=1).depth == matched.reference_depth
    with pytest.raises(ConfigError, match=r"model\.match_params_of"):
        meta(size=size, variant=3, match_params_of=5)


def test_switch_parameter_costs_documented():
    base = meta(size="XL").num_params()
    # tube, s = 2: Conv3d (s-1)*C*p*p*h, linear decoder (s-1)*p*p*C_out*(h+1), ConvTranspose3d s*C_out*C_out*s + C_out
    tube = meta(size="XL", patch_embed="tube", tube_stride=2).num_params() - base
    assert tube == 4 * 4 * H + 4 * 8 * (H + 1) + 16 * 8 * 2 + 8 == 55_592
    assert meta(size="XL", injection="tokens").num_params() == 448_009_376
    assert (
        base - meta(size="XL", injection="tokens").num_params()
        == 28 * (6 * H * H + 6 * H - 4 * H) + 2 * H * H
    )
    assert meta(size="XL", temporal_position="rope").num_params() == base
    assert meta(size="XL", text_dim=768).num_params() - base == 14 * (2 * H * H + 2 * H * 768 + 4 * H)


# --------------------------------------------------------------------------------- factorisation


def silence(model: Latte, axis: str) -> None:
    """Make every attention over ``axis`` ("space" | "time") output zero (its residual adds nothing)."""
    d = model.hidden_size
    with torch.no_grad():
        for block in model.blocks:
            if block.role is FH:  # heads [0, H/2) are spatial, [H/2, H) temporal: their proj columns
                cols = slice(0, d // 2) if axis == "space" else slice(d // 2, d)
                block.attn.proj.weight[:, cols] = 0
            elif block.role is FA:
                target = block.attn if axis == "space" else block.attn_temporal
                target.proj.weight.zero_()
                target.proj.bias.zero_()
            elif (block.role is S) == (axis == "space"):
                block.attn.proj.weight.zero_()
                block.attn.proj.bias.zero_()


def influence(model: Latte, cond: Cond | None, b: int, f: int, r: int, c: int) -> torch.Tensor:
    """Which input (sample, frame, patch row, patch column) influence output pixel ``(b, :, f, r, c)``:
    a bool ``(B, F, h, w)`` from the input gradient."""
    x = video().requires_grad_(True)
    model(x, TIMES, cond)[b, :, f, r, c].sum().backward()
    p = model.patch_size
    touched = x.grad.abs().sum(1)  # (B, F, H, W)
    touched = touched.unflatten(2, (-1, p)).unflatten(4, (-1, p)).sum((3, 5))  # (B, F, h, w)
    return touched != 0


def _cond(injection_classes: int, text_dim: int) -> Cond | None:
    if not injection_classes and not text_dim:
        return None
    return Cond(
        labels=torch.tensor([1, injection_classes]) if injection_classes else None,
        text=torch.randn(2, 3, text_dim, dtype=torch.float64) if text_dim else None,
    )


FACTORISATION = pytest.mark.parametrize(
    ("variant", "injection", "patch_embed", "temporal_position", "text_dim", "num_classes"),
    [(v, inj, "frame", "absolute", 0, 0) for v in (1, 2, 3, 4) for inj in ("adaln", "tokens")]
    + [
        (v, "tokens", "frame", "rope", 6, 3)  # class + timestep tokens, RoPE, cross-attention
        for v in (1, 2, 3, 4)
    ]
    + [(v, "adaln", "tube", "rope", 0, 3) for v in (1, 3, 4)],
)


def _model(variant, injection, patch_embed, temporal_position, text_dim, num_classes) -> Latte:
    model = tiny(
        variant=variant,
        injection=injection,
        patch_embed=patch_embed,
        temporal_position=temporal_position,
        text_dim=text_dim,
        num_classes=num_classes,
    )
    randomize_zero_init(model)
    return model


# output pixel (sample 1, frame 2, pixel (5, 2)) -> patch (2, 1); two probes, so no probe is special
PROBES = [(1, 2, 5, 2), (0, 0, 7, 6)]


@FACTORISATION
@pytest.mark.parametrize("probe", PROBES)
def test_spatial_part_never_mixes_frames(
    variant, injection, patch_embed, temporal_position, text_dim, num_classes, probe
):
    model = _model(variant, injection, patch_embed, temporal_position, text_dim, num_classes)
    silence(model, "time")
    b, f, r, c = probe
    touched = influence(model, _cond(num_classes, text_dim), b, f, r, c)
    s = model.tube_stride
    same_frame = (torch.arange(4) // s == f // s)[:, None, None]  # token frame of the probe
    assert not touched[1 - b].any()  # never across samples
    assert not touched[b][~same_frame.expand_as(touched[b])].any()  # nothing from another (token) frame
    p = (r // 2, c // 2)
    other_positions = touched[b, f].clone()
    other_positions[p] = False
    assert other_positions.any()  # the spatial part does mix positions within the frame


@FACTORISATION
@pytest.mark.parametrize("probe", PROBES)
def test_temporal_part_never_mixes_positions(
    variant, injection, patch_embed, temporal_position, text_dim, num_classes, probe
):
    model = _model(variant, injection, patch_embed, temporal_position, text_dim, num_classes)
    silence(model, "space")
    b, f, r, c = probe
    touched = influence(model, _cond(num_classes, text_dim), b, f, r, c)
    p = (r // 2, c // 2)
    assert not touched[1 - b].any()
    same_position = torch.zeros(4, 4, dtype=torch.bool)
    same_position[p] = True
    assert not touched[b][:, ~same_position].any()  # nothing from another patch position
    s = model.tube_stride
    other_frames = touched[b, :, p[0], p[1]] & (torch.arange(4) // s != f // s)
    assert other_frames.any()  # the temporal part does mix frames at that position


@pytest.mark.parametrize("injection", ["adaln", "tokens"])
def test_variant4_block_mixes_along_the_cross_only(injection):
    """One variant-4 block: out[i, p] depends on in[j, q] iff i == j or p == q (half the heads each way)."""
    model = tiny(variant=4, depth=1, injection=injection)
    randomize_zero_init(model)
    b, f, r, c = PROBES[0]
    touched = influence(model, None, b, f, r, c)[b]  # (F, h, w)
    p = (r // 2, c // 2)
    expected = torch.zeros_like(touched)
    expected[f] = True  # spatial heads: the whole frame
    expected[:, p[0], p[1]] = True  # temporal heads: the same position in every frame
    assert torch.equal(touched, expected)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_full_model_mixes_a_whole_sample_only(variant):
    model = tiny(variant=variant, depth=2)
    randomize_zero_init(model)
    touched = influence(model, None, 0, 3, 0, 7)
    assert touched[0].all() and not touched[1].any()


def test_variant3_adds_temporal_table_at_block0_input():
    """Absolute table: once, at the input of the first block that attends over time (block 0 for v3/v4)."""
    for variant, first in [(1, 1), (2, 2), (3, 0), (4, 0)]:
        model = tiny(variant=variant, depth=4)
        assert model.first_temporal_block == first
    model = tiny(variant=3, depth=2)
    randomize_zero_init(model)
    seen = {}
    model.blocks[0].register_forward_hook(lambda m, args, out: seen.setdefault("in", args[0]))
    with torch.no_grad():
        model(video(), TIMES)
        plain = model._embed(video())
    torch.testing.assert_close(seen["in"], plain + model.temp_embed[:, None])


# ------------------------------------------------------------------------------------------- FLOPs


def test_count_flops_is_two_per_multiply_add():
    """Tiny variant 1 on the meta device against a hand count of its multiply-adds (MACs)."""
    model = meta(**TINY)
    d, n_tok, frames, per_frame, heads = 16, 64, 4, 16, 2  # 4 frames x 16 patches
    head_dim = d // heads
    macs = n_tok * (2 * 4 * d)  # patch embedding conv: C p^2 -> d per token
    macs += 256 * d + d * d  # timestep MLP (one sample)
    per_block = d * 6 * d + n_tok * (3 * d * d + d * d + 8 * d * d)  # adaLN, qkv, proj, MLP
    macs += 2 * per_block
    macs += 2 * heads * frames * per_frame * per_frame * head_dim  # spatial QK^T and AV
    macs += 2 * heads * per_frame * frames * frames * head_dim  # temporal QK^T and AV
    macs += d * 2 * d + n_tok * d * (4 * 4)  # final adaLN and decoder (p^2 * 2C outputs)
    assert count_flops(model, (1, 2, 4, 8, 8)) == 2 * macs


def test_flops_variant_relations():
    kw = dict(size="S", input_size=16, num_frames=8)
    x_shape = (1, 4, 8, 16, 16)
    v1, v2, v3, v4 = (count_flops(meta(variant=v, **kw), x_shape) for v in (1, 2, 3, 4))
    assert v1 == v2 == v4  # v4 splits the heads: the same matrix products as a spatial + a temporal block
    assert v3 > v1  # one more attention per block
