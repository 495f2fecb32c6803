"""Latte's design switches: every combination builds and trains (forward + backward, right shapes), and the
behaviour of each switch: tube embedding, "all tokens" injection, RoPE, text cross-attention, image-video
joint training (inside the model), config errors."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch
from einops import rearrange

from tests.models.latte_helpers import TINY, randomize_zero_init, tiny_latte, video
from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.models import BlockRole, Latte
from vidgen.nn import (
    AdaLNModulation,
    Attention,
    Axis,
    CrossAttention,
    TemporalUpsample,
    TokenGrid,
    TubePatchEmbed,
    apply_rope,
    rope_angles,
)

TIMES = torch.tensor([10, 700])
TEXT_DIM = 6


def tiny(**overrides) -> Latte:
    return tiny_latte(**overrides)


def text(b=2, length=5, seed=3) -> torch.Tensor:
    return torch.randn(
        b, length, TEXT_DIM, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


MASK = torch.tensor([[True, True, True, False, False], [True] * 5])


#: joint training: the own labels of up to 3 images per sample (another class than the clip's, mostly)
IMAGE_LABELS = torch.tensor([[0, 2, 1], [2, 0, 0]])


def image_text(num_images: int, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """``(text (2, K, 5, TEXT_DIM), mask (2, K, 5))``: each image's own caption states."""
    states = torch.stack([text(seed=seed + k) for k in range(num_images)], dim=1)
    return states, MASK[:, None].expand(2, num_images, 5)


def make_cond(conditioning: str, num_video_frames: int | None = None, num_images: int = 0) -> Cond:
    """The clip's condition; with ``num_images`` appended images, each image's own (``cond.images``)."""
    images = None
    if num_images and conditioning == "class":
        images = Cond(labels=IMAGE_LABELS[:, :num_images])
    elif num_images and conditioning == "text":
        states, mask = image_text(num_images)
        images = Cond(text=states, text_mask=mask)
    return Cond(
        labels=torch.tensor([1, 3]) if conditioning == "class" else None,
        text=text() if conditioning == "text" else None,
        text_mask=MASK if conditioning == "text" else None,
        num_video_frames=num_video_frames,
        images=images,
    )


def model_for(conditioning: str, **switches) -> Latte:
    return tiny(
        num_classes=3 if conditioning == "class" else 0,
        text_dim=TEXT_DIM if conditioning == "text" else 0,
        **switches,
    )


# --------------------------------------------------------------------------- every combination

COMBINATIONS = list(
    itertools.product(
        [1, 2, 3, 4], ["frame", "tube"], ["adaln", "tokens"], ["absolute", "rope"], ["none", "class", "text"]
    )
)


@pytest.mark.parametrize(
    ("variant", "patch_embed", "injection", "temporal_position", "conditioning"), COMBINATIONS
)
@pytest.mark.parametrize("joint", [False, True])
def test_every_switch_combination_trains(
    variant, patch_embed, injection, temporal_position, conditioning, joint
):
    model = model_for(
        conditioning,
        variant=variant,
        patch_embed=patch_embed,
        injection=injection,
        temporal_position=temporal_position,
    )
    randomize_zero_init(model)
    frames = 6 if joint else 4  # joint training: 4 clip frames + 2 independent images
    x = video(f=frames).requires_grad_(True)
    cond = make_cond(conditioning, num_video_frames=4 if joint else None, num_images=2 if joint else 0)
    if joint and patch_embed == "tube":
        with pytest.raises(ValueError, match="patch_embed=tube"):
            model(x, TIMES, cond)
        return
    out = model(x, TIMES, cond)
    assert out.shape == (2, 4, frames, 8, 8)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing  # every parameter takes part


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_every_variant_on_meta_at_xl_shapes(variant):
    with torch.device("meta"):
        model = Latte(size="XL", variant=variant, injection="tokens", temporal_position="rope", text_dim=32)
        out = model(torch.empty(1, 4, 16, 32, 32), torch.empty(1), Cond(text=torch.empty(1, 7, 32)))
    assert out.shape == (1, 8, 16, 32, 32)


def test_gradient_checkpointing_exact_with_every_switch():
    results = []
    for flag in (False, True):
        model = model_for(
            "text", variant=3, injection="tokens", temporal_position="rope", gradient_checkpointing=flag
        ).train()
        randomize_zero_init(model)
        x = video(f=6).requires_grad_(True)
        model(x, TIMES, make_cond("text", num_video_frames=4, num_images=2)).square().sum().backward()
        results.append((x.grad.clone(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    torch.testing.assert_close(results[1][0], results[0][0])
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], grad, msg=name)


# ------------------------------------------------------------------------------------ tube embedding


def test_tube_embedding_tokens_and_temporal_upsampling():
    model = tiny(patch_embed="tube", tube_stride=2)
    assert isinstance(model.x_embedder, TubePatchEmbed) and model.temp_embed.shape == (2, 16)
    x = video()
    tokens = model.x_embedder(x)
    assert tokens.shape == (2, 2, 16, 16)  # F/s = 2 token frames of 4x4 patches
    weight = model.x_embedder.proj.weight.reshape(16, -1)  # (D, C*s*p*p)
    tube = x[1, :, 2:4, 2:4, 4:6].reshape(-1)  # token frame 1, patch row 1, column 2
    torch.testing.assert_close(tokens[1, 1, 1 * 4 + 2], weight @ tube + model.x_embedder.proj.bias)
    # the 3D transposed conv starts as channel-block selection: frame k of a tube = decoded channels block k
    up = TemporalUpsample(6, 3, 2).double()
    y = torch.randn(2, 6, 2, 4, 4, dtype=torch.float64)
    expected = torch.stack([y[:, :3], y[:, 3:]], dim=3).flatten(2, 3)  # (B, 3, [f0k0, f0k1, f1k0, f1k1])
    torch.testing.assert_close(up(y), expected)
    with pytest.raises(ValueError, match="at least 6"):
        TemporalUpsample(5, 3, 2)
    assert model.final_layer.linear.out_features == 2 * 2 * 2 * model.out_channels  # p*p*s*C_out
    assert torch.count_nonzero(model(x, TIMES)) == 0
    randomize_zero_init(model)
    out = model(x, TIMES)
    assert out.shape == (2, 4, 4, 8, 8)
    # the two frames of a tube have their own outputs from the start (no repetition)
    assert not torch.allclose(out[:, :, 0], out[:, :, 1])


@pytest.mark.parametrize("perturb_upsampler", [False, True])
def test_tube_decoder_gives_a_tube_full_rank(perturb_upsampler):
    """The Jacobian of the output over one tube (s frames x C channels at one pixel) w.r.t. the input tube has
    full rank s*C: the s frames are not linear maps of the same C numbers (the bug was rank C of s*C)."""
    model = tiny(patch_embed="tube", tube_stride=2, learn_sigma=False)  # C_out = C = 2: eps only
    randomize_zero_init(model)
    if perturb_upsampler:
        with torch.no_grad():
            weight = model.temporal_upsample.proj.weight
            weight.add_(
                0.3
                * torch.randn(weight.shape, generator=torch.Generator().manual_seed(4), dtype=weight.dtype)
            )
    x = video()
    b, r, c = 1, 3, 5

    def tube_out(tube: torch.Tensor) -> torch.Tensor:
        xx = x.clone()
        xx[b, :, 2:4, r, c] = tube
        return model(xx, TIMES)[b, :, 2:4, r, c].reshape(-1)  # (C * s,)

    jacobian = torch.autograd.functional.jacobian(tube_out, x[b, :, 2:4, r, c].clone())
    jacobian = jacobian.reshape(4, 4)  # (C*s out, C*s in)
    assert torch.linalg.matrix_rank(jacobian).item() == 2 * model.in_channels


def test_tube_frames_must_divide():
    with pytest.raises(ConfigError) as info:
        Latte(**{**TINY, "patch_embed": "tube", "tube_stride": 3})
    assert info.value.key == "model.tube_stride"
    Latte(**{**TINY, "tube_stride": 3})  # only checked with the tube embedding
    model = tiny(patch_embed="tube", tube_stride=2)
    with pytest.raises(ValueError, match="tube_stride"):
        model(video(f=5), TIMES)


# --------------------------------------------------------------------------------- all-tokens injection


@pytest.mark.parametrize("num_classes", [0, 3])
def test_tokens_injection_has_no_modulation_and_prepends_condition_tokens(num_classes):
    model = tiny(injection="tokens", num_classes=num_classes, variant=3)
    assert not any(isinstance(m, AdaLNModulation) for m in model.modules())
    assert model.final_layer.adaLN_modulation is None and model.final_layer.norm_final.weight is not None
    assert model.blocks[0].norm1.weight is not None  # affine LayerNorms (standard block)
    assert model.num_condition_tokens == 1 + (num_classes > 0)
    shapes = []
    model.blocks[0].register_forward_hook(lambda m, args, out: shapes.append(args[0].shape))
    cond = Cond(labels=torch.tensor([0, 3])) if num_classes else None
    out = model(video(), TIMES, cond)
    assert shapes == [(2, 4, model.num_condition_tokens + 16, 16)]  # (B, F, n_cond + h*w, D)
    assert out.shape == (2, 4, 4, 8, 8)


def test_tokens_injection_timestep_and_class_change_the_output():
    model = tiny(injection="tokens", num_classes=3)
    randomize_zero_init(model)
    x = video()
    a = model(x, TIMES, Cond(labels=torch.tensor([0, 0])))
    assert not torch.allclose(a, model(x, TIMES + 100, Cond(labels=torch.tensor([0, 0]))))
    b = model(x, TIMES, Cond(labels=torch.tensor([0, 3])))
    torch.testing.assert_close(b[0], a[0])  # each sample's condition tokens are its own
    assert not torch.allclose(b[1], a[1])


# ----------------------------------------------------------------------------------------------- RoPE


def test_rope_scores_depend_only_on_relative_offsets():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(3, 7, 8, generator=gen, dtype=torch.float64)  # (heads, L, d)
    k = torch.randn(3, 7, 8, generator=gen, dtype=torch.float64)

    def scores(offset: float) -> torch.Tensor:
        cos, sin = rope_angles(torch.arange(7) + offset, 8, dtype=torch.float64)
        return apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)

    base = scores(0)
    for offset in (1, 5, 123.5, 10_000):
        torch.testing.assert_close(scores(offset), base, rtol=1e-9, atol=1e-9)
    assert not torch.allclose(base, q @ k.transpose(-1, -2))  # RoPE does change the scores
    # a pair (m, n) scores the same as (m + j, n + j): only m - n matters
    cos, sin = rope_angles(torch.arange(7), 8, dtype=torch.float64)
    one_q = apply_rope(q[0, :1].expand(7, 8), cos, sin)  # the same query vector at every position
    one_k = apply_rope(k[0, :1].expand(7, 8), cos, sin)
    s = one_q @ one_k.T
    for delta in range(-6, 7):
        diagonal = torch.diagonal(s, offset=delta)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal))
    # a rotation: norms are kept
    torch.testing.assert_close(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1))
    with pytest.raises(ValueError):
        rope_angles(torch.arange(3), 5)


def test_grid_temporal_attention_applies_rope_along_frames():
    torch.manual_seed(0)
    attn = Attention(16, 2).double()
    x = torch.randn(2, 5, 3, 16, dtype=torch.float64)  # (B, F, S, D)
    rope = rope_angles(torch.arange(5), 8, dtype=torch.float64)
    out = attn.forward_grid(x, TokenGrid(time_axis=1, rope=rope), (Axis.TIME,))
    sequences = rearrange(x, "b f s d -> (b s) f d")
    expected = rearrange(attn(sequences, rope=rope), "(b s) f d -> b f s d", b=2)
    torch.testing.assert_close(out, expected)
    # the same with tokens arranged (B, S, F, D)
    out2 = attn.forward_grid(
        rearrange(x, "b f s d -> b s f d"), TokenGrid(time_axis=2, rope=rope), (Axis.TIME,)
    )
    torch.testing.assert_close(rearrange(out2, "b s f d -> b f s d"), expected)


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_rope_model_sees_frame_order_without_an_additive_table(variant):
    model = tiny(variant=variant, temporal_position="rope")
    randomize_zero_init(model)
    x = video()
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(x, TIMES)
        assert not torch.allclose(model(x[:, :, perm], TIMES), out[:, :, perm], atol=1e-6)
        model.temp_embed.normal_()  # the absolute table is not used with RoPE
        torch.testing.assert_close(model(x, TIMES), out)


# ---------------------------------------------------------------------------------------------- text


def test_captions_change_the_output_and_each_sample_reads_its_own():
    for variant in (1, 2, 3, 4):
        model = model_for("text", variant=variant, depth=2)
        x = video()
        cond = make_cond("text")
        other = Cond(text=text(seed=9), text_mask=MASK)
        # zero-initialised cross-attention output (PixArt): a fresh model ignores the caption
        torch.testing.assert_close(model(x, TIMES, cond), model(x, TIMES, other))
        randomize_zero_init(model)
        a = model(x, TIMES, cond)
        assert not torch.allclose(a, model(x, TIMES, other))
        mixed = Cond(text=torch.cat([cond.text[:1], other.text[1:]]), text_mask=MASK)
        b = model(x, TIMES, mixed)
        torch.testing.assert_close(b[0], a[0])
        assert not torch.allclose(b[1], a[1])


def test_text_mask_is_respected():
    model = model_for("text", variant=3)
    randomize_zero_init(model)
    x, states = video(), text()
    out = model(x, TIMES, Cond(text=states, text_mask=MASK))
    padded = states.clone()
    padded[0, 3:] = 100.0  # padding tokens of sample 0
    torch.testing.assert_close(model(x, TIMES, Cond(text=padded, text_mask=MASK)), out)
    real = states.clone()
    real[0, 1] += 1.0
    assert not torch.allclose(model(x, TIMES, Cond(text=real, text_mask=MASK))[0], out[0])
    # no mask = every token real
    assert not torch.allclose(model(x, TIMES, Cond(text=padded)), out)


def test_cross_attention_with_no_real_token_adds_nothing():
    attn = CrossAttention(8, 4, 2)
    torch.nn.init.normal_(attn.proj.bias)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 4)
    mask = torch.tensor([[False] * 3, [True, False, True]])
    out = attn(x, context, mask)
    assert torch.equal(out[0], torch.zeros(5, 8)) and out[1].abs().sum() > 0


def test_text_errors():
    text_model, plain = model_for("text"), tiny()
    with pytest.raises(ValueError, match=r"text-conditional.*cond\.text is missing"):
        text_model(video(), TIMES)
    with pytest.raises(ValueError, match="text-conditional"):
        text_model(video(), TIMES, Cond(pooled_text=torch.randn(2, TEXT_DIM)))
    with pytest.raises(ValueError, match="no text conditioning"):
        plain(video(), TIMES, Cond(text=text()))
    with pytest.raises(ValueError, match=r"cond.text must have shape \(2, L, 6\)"):
        text_model(video(), TIMES, Cond(text=torch.randn(2, 5, 7, dtype=torch.float64)))
    with pytest.raises(ValueError, match="text_mask"):
        text_model(video(), TIMES, Cond(text=text(), text_mask=MASK[:, :4]))
    # pooled text is accepted, not used (PixArt / Latte T2V)
    randomize_zero_init(text_model)
    torch.testing.assert_close(
        text_model(video(), TIMES, Cond(text=text(), pooled_text=torch.randn(2, TEXT_DIM))),
        text_model(video(), TIMES, Cond(text=text())),
    )


# ------------------------------------------------------------------------------ image-video joint training

JOINT = [
    (v, inj, tp, cnd)
    for v in (1, 2, 3, 4)
    for inj in ("adaln", "tokens")
    for tp in ("absolute", "rope")
    for cnd in ("none",)
]
JOINT += [(v, "tokens", "rope", "text") for v in (1, 3, 4)] + [(2, "adaln", "absolute", "class")]


@pytest.mark.parametrize(("variant", "injection", "temporal_position", "conditioning"), JOINT)
def test_joint_training_clip_and_images_are_independent(variant, injection, temporal_position, conditioning):
    """Clip frames = the model on the clip alone (so images never reach them, and the temporal embedding
    is the clip's); each image frame = the model on that one frame as an image (no temporal anything)."""
    model = model_for(
        conditioning, variant=variant, depth=4, injection=injection, temporal_position=temporal_position
    )
    randomize_zero_init(model)
    x = video(f=7)  # 4 clip frames + 3 images
    with torch.no_grad():
        cond = make_cond(conditioning, num_video_frames=4, num_images=3)
        out = model(x, TIMES, cond)
        assert out.shape == (2, 4, 7, 8, 8)
        torch.testing.assert_close(out[:, :, :4], model(x[:, :, :4], TIMES, make_cond(conditioning)))
        for k in range(3):  # image k alone, under its own condition
            own = None if cond.images is None else cond.images.select((slice(None), slice(k, k + 1)))
            alone = model(x[:, :, 4 + k : 5 + k], TIMES, replace(cond, num_video_frames=0, images=own))
            torch.testing.assert_close(out[:, :, 4 + k : 5 + k], alone)
        # an image frame is not a 1-frame clip: it gets no temporal attention and no temporal table
        as_clip = model(x[:, :, 4:5], TIMES, make_cond(conditioning))
        assert not torch.allclose(as_clip, out[:, :, 4:5])


@pytest.mark.parametrize("variant", [1, 2, 3, 4])
def test_joint_training_gradients(variant):
    """d clip outputs / d image inputs == 0 exactly; an image output depends on its own frame only; the
    clip frames do mix over time."""
    model = tiny(variant=variant, depth=2, injection="tokens")
    randomize_zero_init(model)
    x = video(f=6).requires_grad_(True)
    cond = Cond(num_video_frames=4)
    out = model(x, TIMES, cond)
    (grad,) = torch.autograd.grad(out[:, :, :4].sum(), x, retain_graph=True)
    assert torch.count_nonzero(grad[:, :, 4:]) == 0 and torch.count_nonzero(grad[:, :, :4]) > 0
    (grad,) = torch.autograd.grad(out[:, :, 4].sum(), x, retain_graph=True)
    assert torch.count_nonzero(grad[:, :, [0, 1, 2, 3, 5]]) == 0 and torch.count_nonzero(grad[:, :, 4]) > 0
    (grad,) = torch.autograd.grad(out[:, :, 0, 1, 1].sum(), x)
    assert torch.count_nonzero(grad[:, :, 3, 1, 1]) > 0  # frame 3 reaches frame 0 at that position


def test_joint_training_adds_the_temporal_table_to_clip_frames_only():
    model = tiny(variant=1)
    randomize_zero_init(model)
    seen = {}
    model.blocks[1].register_forward_hook(lambda m, args, out: seen.setdefault("in", args[0]))
    x = video(f=6)
    with torch.no_grad():
        model(x, TIMES, Cond(num_video_frames=4))
        before = rearrange(
            model.blocks[0](model._embed(x), model._condition(TIMES, None, None, 2, 6)[0]),
            "b f s d -> b s f d",
        )
    added = seen["in"] - before  # (B, S, F, D)
    torch.testing.assert_close(added[:, :, :4], model.temp_embed.expand_as(added[:, :, :4]))
    assert torch.count_nonzero(added[:, :, 4:]) == 0


def test_joint_training_errors_and_cond_field():
    model = tiny()
    for bad in (7, -1, 2.0):
        with pytest.raises(ValueError, match="num_video_frames"):
            model(video(f=6), TIMES, Cond(num_video_frames=bad))
    torch.testing.assert_close(model(video(), TIMES, Cond(num_video_frames=4)), model(video(), TIMES))
    cond = Cond(labels=torch.tensor([1, 2]), num_video_frames=4)
    assert cond.repeat(2).num_video_frames == 4 and cond.select(slice(0, 1)).num_video_frames == 4
    assert cond.to("cpu").num_video_frames == 4 and set(cond._tensors()) == {"labels"}


# ---------------------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        (dict(patch_embed="cube"), "model.patch_embed"),
        (dict(tube_stride=0), "model.tube_stride"),
        (dict(patch_embed="tube", tube_stride=3), "model.tube_stride"),
        (dict(injection="cross"), "model.injection"),
        (dict(temporal_position="learned"), "model.temporal_position"),
        (dict(temporal_position="rope", hidden_size=12, num_heads=4), "model.temporal_position"),
        (dict(text_dim=-1), "model.text_dim"),
        (dict(variant=4, hidden_size=24, num_heads=3), "model.num_heads"),
        (dict(variant=2, depth=1), "model.depth"),
        (dict(variant="2"), "model.variant"),
    ],
)
def test_bad_switch_raises_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info, torch.device("meta"):
        Latte(**{**TINY, **kwargs})
    assert info.value.key == key and key in str(info.value)


def test_block_roles_attend_as_named():
    assert BlockRole.TEMPORAL.arrangement == "b s f d" and BlockRole.FACTORISED_HEADS.arrangement == "b f s d"
    assert [r.attends_time for r in BlockRole] == [False, True, True, True]
    assert [r.attends_space for r in BlockRole] == [True, False, True, True]
    assert math.prod(TokenGrid(time_axis=2).dim(a) for a in Axis) == 2
