"""CMD's motion DiT (``vidgen.models.cmd.motion_dit``): grids derived from the autoencoder (spec test 7,
release bugs B2/B3/B9), conditioning wired (test 8, B4), classifier-free guidance on every eps channel with
the content frame in both halves (test 9, B5), parameter counts against the release (test 12), and the
motion patches never straddling the x/y planes. Tiny float64 models: zero / non-zero is exact."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.models.latte_helpers import randomize_zero_init
from vidgen.conditioning import Cond
from vidgen.conditioning.conditioners import ClassConditioner
from vidgen.diffusion.guidance import guided_model_fn
from vidgen.models.cmd.motion_dit import MotionDiT, motion_position_table, patchify_motion, unpatchify_motion

#: D=4 channels, F=4 frames, W'=8 (x-plane first), H'=4, content 3 x 8 x 12 at q=4: 2x6 + 2x3 tokens
TINY: dict[str, Any] = dict(
    motion_channels=4,
    num_frames=4,
    latent_w=8,
    latent_h=4,
    content_channels=3,
    content_size=(8, 12),
    size="tiny",
    depth=2,
    hidden_size=32,
    num_heads=2,
)
D, F, COLS = 4, 4, 12
T = torch.tensor([10, 700])


def tiny(randomize: bool = True, **overrides: Any) -> MotionDiT:
    """A seeded float64 tiny MotionDiT; ``randomize`` re-initialises the zero-init layers randomly."""
    torch.manual_seed(0)
    model = MotionDiT(**{**TINY, **overrides}).double()
    if randomize:
        randomize_zero_init(model)
    return model


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def frame(seed: int = 1) -> torch.Tensor:
    return randn(2, 3, 8, 12, seed=seed)


# ------------------------------------------------------------------ test 7: grids from the autoencoder


@pytest.mark.parametrize(
    ("latent_h", "latent_w", "content", "motion_tokens", "content_tokens"),
    [
        (32, 32, (3, 64, 64), 8 * 32, 16 * 16),  # UCF pixel 64^2: z (8, 16, 64)
        (16, 16, (4, 32, 32), 8 * 16, 8 * 8),  # 256^2 video in SD latents: z (8, 16, 32)
        (32, 64, (4, 64, 128), 8 * 48, 16 * 32),  # 512x1024 (T2V): z (8, 16, 32+64), non-square
    ],
)
@pytest.mark.parametrize("learn_sigma", [True, False])
def test_grids_derived_from_the_autoencoder(
    latent_h, latent_w, content, motion_tokens, content_tokens, learn_sigma
):
    # the AE (p=2) of a 16-frame clip gives z: (D=8, 16, W'+H') and the content frame at its input size
    model = MotionDiT(
        motion_channels=8,
        num_frames=16,
        latent_h=latent_h,
        latent_w=latent_w,
        content_channels=content[0],
        content_size=list(content[1:]),
        size="tiny",
        depth=1,
        hidden_size=32,
        num_heads=2,
        learn_sigma=learn_sigma,
    )
    assert (model.num_motion_tokens, model.num_content_tokens) == (motion_tokens, content_tokens)
    assert tuple(model.motion_pos_embed.shape) == (motion_tokens, 32)
    assert tuple(model.content_pos_embed.shape) == (content_tokens, 32)
    # every token has its own code (the release's square table repeats / misplaces them: B3)
    for table in (model.motion_pos_embed, model.content_pos_embed):
        assert torch.unique(table, dim=0).shape[0] == table.shape[0]
    randomize_zero_init(model)
    z = torch.randn(1, 8, 16, latent_w + latent_h)
    out = model(z, torch.tensor([5]), Cond(content_frame=torch.randn(1, *content)))
    assert tuple(out.shape) == (1, 16 if learn_sigma else 8, 16, latent_w + latent_h)
    assert torch.isfinite(out).all() and out.abs().amax() > 0


def test_motion_table_is_separable_over_time_plane_and_spatial_index():
    h, fp, wp, hp = 32, 3, 4, 2  # time patches, x-plane columns, y-plane columns
    table = motion_position_table(h, fp, wp, hp).view(fp, wp + hp, h)
    time, plane, spatial = table[..., : h // 4], table[..., h // 4 : h // 2], table[..., h // 2 :]
    assert torch.equal(time, time[:, :1].expand_as(time))  # the time part depends on the row only
    assert torch.equal(plane[:, :wp], plane[:1, :1].expand(fp, wp, -1))  # x-plane: one plane code
    assert torch.equal(plane[:, wp:], plane[:1, wp:].expand(fp, hp, -1))  # y-plane: the other
    assert not torch.equal(plane[0, 0], plane[0, wp])
    # the spatial index restarts in the y-plane: column wp + j has x-plane column j's spatial code
    assert torch.equal(spatial[:, wp : wp + hp], spatial[:, :hp])
    assert not torch.equal(spatial[0, 0], spatial[0, 1])
    assert torch.equal(spatial, spatial[:1].expand_as(spatial))


def test_segment_embedding_marks_the_two_kinds_of_token():
    paper, compat = tiny(randomize=False), tiny(randomize=False, compat_release=True)
    assert paper.segment_embedder.weight.shape == (2, 32)
    assert not torch.equal(paper.segment_embedder.weight[0], paper.segment_embedder.weight[1])
    assert compat.segment_embedder is None
    # compat keeps the same (correct, rectangular) position tables
    assert torch.equal(paper.motion_pos_embed, compat.motion_pos_embed)
    assert torch.equal(paper.content_pos_embed, compat.content_pos_embed)


# ---------------------------------------------------------------------- test 8: conditioning is wired


def test_fresh_model_outputs_zeros():
    model = tiny(randomize=False, num_classes=5)
    out = model(randn(2, D, F, COLS), T, Cond(labels=torch.tensor([1, 2]), content_frame=frame()))
    assert tuple(out.shape) == (2, 2 * D, F, COLS) and torch.count_nonzero(out) == 0


def test_output_depends_on_content_frame_labels_and_t():
    model = tiny(num_classes=5)
    x, labels = randn(2, D, F, COLS), torch.tensor([1, 2])
    base = model(x, T, Cond(labels=labels, content_frame=frame()))

    def moved(out: torch.Tensor) -> torch.Tensor:
        return (out - base).abs().amax(dim=(1, 2, 3))  # per sample

    assert (moved(model(x, T, Cond(labels=labels, content_frame=frame(seed=2)))) > 1e-6).all()
    assert (moved(model(x, T, Cond(labels=torch.tensor([3, 0]), content_frame=frame()))) > 1e-6).all()
    assert (moved(model(x, T + 50, Cond(labels=labels, content_frame=frame()))) > 1e-6).all()
    # the same call again is bit-identical (the checks above are not noise)
    assert torch.equal(model(x, T, Cond(labels=labels, content_frame=frame())), base)


def test_output_depends_on_pooled_text_and_respects_the_mask():
    model = tiny(text_dim=6)
    x = randn(2, D, F, COLS)
    pooled = randn(2, 6, seed=3)
    base = model(x, T, Cond(pooled_text=pooled, content_frame=frame()))
    other = model(x, T, Cond(pooled_text=pooled + 1, content_frame=frame()))
    assert ((other - base).abs().amax(dim=(1, 2, 3)) > 1e-6).all()
    # without pooled text: the masked mean of the token states; padding does not matter
    text, mask = randn(2, 5, 6, seed=4), torch.tensor([[True, True, False, False, False]] * 2)
    from_text = model(x, T, Cond(text=text, text_mask=mask, content_frame=frame()))
    padded = text.clone()
    padded[:, 2:] = 100.0
    assert torch.equal(model(x, T, Cond(text=padded, text_mask=mask, content_frame=frame())), from_text)
    mean = text[:, :2].mean(dim=1)
    torch.testing.assert_close(model(x, T, Cond(pooled_text=mean, content_frame=frame())), from_text)
    # pooled text, when given, wins over the token states
    both = model(x, T, Cond(text=padded, text_mask=mask, pooled_text=pooled, content_frame=frame()))
    assert torch.equal(both, base)


def test_null_text_condition_runs():
    # the TextConditioner's null(): the empty caption's states (SOT, EOT real; the rest padding) and pooled
    model = tiny(text_dim=6)
    x, mask = randn(2, D, F, COLS), torch.zeros(2, 5, dtype=torch.bool)
    mask[:, :2] = True
    null = Cond(
        text=randn(2, 5, 6, seed=5), text_mask=mask, pooled_text=randn(2, 6, seed=6), content_frame=frame()
    )
    assert torch.isfinite(model(x, T, null)).all()
    # a caller's zero pooled vector, and a mask without any real token (pools to zeros, no NaN)
    zeros = model(x, T, Cond(pooled_text=torch.zeros(2, 6, dtype=torch.float64), content_frame=frame()))
    empty = model(
        x, T, Cond(text=randn(2, 5, 6), text_mask=torch.zeros(2, 5, dtype=torch.bool), content_frame=frame())
    )
    assert torch.equal(zeros, empty)


def test_compat_release_ignores_labels_and_text():
    model = tiny(compat_release=True, num_classes=5, text_dim=6)
    assert model.y_embedder is None and model.text_embedder is None
    x = randn(2, D, F, COLS)
    base = model(x, T, Cond(labels=torch.tensor([1, 2]), content_frame=frame()))
    assert torch.equal(model(x, T, Cond(labels=torch.tensor([4, 0]), content_frame=frame())), base)
    assert torch.equal(model(x, T, Cond(pooled_text=randn(2, 6), content_frame=frame())), base)
    assert torch.equal(model(x, T, Cond(content_frame=frame())), base)
    # ... but not the content frame or t
    assert not torch.allclose(model(x, T, Cond(content_frame=frame(seed=7))), base)
    assert not torch.allclose(model(x, T + 1, Cond(content_frame=frame())), base)


def test_null_label_is_the_null_embedding():
    model = tiny(num_classes=5)
    x, null = randn(2, D, F, COLS), ClassConditioner(5).null(2)
    assert null.labels.tolist() == [5, 5]
    out_null = model(x, T, Cond(labels=null.labels, content_frame=frame()))
    out_mixed = model(x, T, Cond(labels=torch.tensor([5, 0]), content_frame=frame()))
    assert torch.equal(out_mixed[0], out_null[0]) and not torch.allclose(out_mixed[1], out_null[1])
    # with the null row zeroed, the null label computes exactly what the label-free twin computes
    with torch.no_grad():
        model.y_embedder.embedding_table.weight[5].zero_()
    twin = tiny(randomize=False)
    missing, unexpected = twin.load_state_dict(model.state_dict(), strict=False)
    assert missing == [] and unexpected == ["y_embedder.embedding_table.weight"]
    torch.testing.assert_close(
        model(x, T, Cond(labels=null.labels, content_frame=frame())),
        twin(x, T, Cond(content_frame=frame())),
        rtol=0,
        atol=1e-13,
    )


def test_missing_or_misshaped_conditions_raise():
    model = tiny(num_classes=5)
    x, labels = randn(2, D, F, COLS), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="content_frame"):
        model(x, T, Cond(labels=labels))
    with pytest.raises(ValueError, match="content_frame"):
        model(x, T, None)
    with pytest.raises(ValueError, match="content_frame"):
        model(x, T, Cond(labels=labels, content_frame=randn(2, 3, 12, 8)))  # transposed
    with pytest.raises(ValueError, match="labels"):
        model(x, T, Cond(content_frame=frame()))
    with pytest.raises(ValueError, match="motion latent"):
        model(randn(2, D, F, COLS + 2), T, Cond(labels=labels, content_frame=frame()))
    with pytest.raises(ValueError, match="text"):
        model(x, T, Cond(labels=labels, pooled_text=randn(2, 6), content_frame=frame()))
    with pytest.raises(ValueError, match="labels"):
        tiny()(x, T, Cond(labels=labels, content_frame=frame()))  # no label table
    with pytest.raises(ValueError, match="pooled_text"):
        tiny(text_dim=6)(x, T, Cond(content_frame=frame()))


# ------------------------------------------------------------------------------ test 9: CFG algebra


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_guidance_on_every_eps_channel_with_the_content_frame_in_both_halves(scale):
    model = tiny(num_classes=5)
    x, content = randn(2, D, F, COLS), frame()
    cond = Cond(labels=torch.tensor([1, 2]), content_frame=content)
    null = ClassConditioner(5).null(2)
    null.content_frame = content  # the content frame is never dropped
    eps_c, eps_u = model(x, T, cond), model(x, T, null)
    assert ((eps_c - eps_u)[:, :D].abs().amax(dim=(0, 2, 3)) > 1e-6).all()  # every eps channel is guided
    guided = guided_model_fn(model, cond, null, scale, learn_sigma=True)(x, T)
    expected = eps_u[:, :D] + scale * (eps_c[:, :D] - eps_u[:, :D])
    torch.testing.assert_close(guided[:, :D], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(guided[:, D:], eps_c[:, D:], rtol=0, atol=1e-12)  # variance: conditional
    if scale == 1.0:
        assert torch.equal(guided, eps_c)
    # the unconditional half still sees the content frame
    other = Cond(labels=null.labels, content_frame=frame(seed=9))
    assert not torch.allclose(model(x, T, other), eps_u)


def test_guidance_without_learned_sigma():
    model = tiny(num_classes=5, learn_sigma=False)
    x, content = randn(2, D, F, COLS), frame()
    cond = Cond(labels=torch.tensor([1, 2]), content_frame=content)
    null = Cond(labels=torch.tensor([5, 5]), content_frame=content)
    eps_c, eps_u = model(x, T, cond), model(x, T, null)
    guided = guided_model_fn(model, cond, null, 2.5, learn_sigma=False)(x, T)
    assert guided.shape == (2, D, F, COLS)
    torch.testing.assert_close(guided, eps_u + 2.5 * (eps_c - eps_u), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- test 12: parameter counts


def meta(**kwargs: Any) -> MotionDiT:
    """At the release's UCF config: z (8, 16, 32+32), content 3 x 64 x 64 at q=4."""
    args = dict(
        motion_channels=8, num_frames=16, latent_h=32, latent_w=32, content_channels=3, content_size=64
    )
    with torch.device("meta"):
        return MotionDiT(**args, **kwargs)


@pytest.mark.parametrize(
    ("size", "release", "trainable", "paper_101"),
    [
        ("S", 32_714_560, 32_517_952, 32_557_888),
        ("B", 130_014_784, 129_621_568, 129_701_440),
        ("L", 457_439_296, 456_915_008, 457_021_504),
        ("XL", 674_383_168, 673_793_344, 673_913_152),
    ],
)
def test_parameter_counts_match_the_release(size, release, trainable, paper_101):
    # The release keeps its two frozen sin-cos tables as nn.Parameter(requires_grad=False), counted by
    # numel: 256 motion + 256 content tokens, one h-wide row each. vidgen keeps them as buffers, so the
    # release's figure is our (all trainable) count + 512 h.
    compat = meta(size=size, compat_release=True, num_classes=101)  # labels ignored: no table, as released
    h = compat.hidden_size
    assert compat.num_tokens == 512
    assert compat.num_params() == compat.num_params(trainable_only=False) == trainable
    assert trainable + compat.num_tokens * h == release
    assert compat.motion_pos_embed.numel() + compat.content_pos_embed.numel() == 512 * h
    # paper mode: + segment embedding (2 h) + label table with the null class (102 h)
    paper = meta(size=size, num_classes=101)
    assert paper.num_params() == paper_101 == trainable + 2 * h + 102 * h


def test_tiny_parameter_count():
    assert meta(size="tiny", compat_release=True).num_params() == 187_712
    assert meta(size="tiny", num_classes=101).num_params() == 194_368


# ------------------------------------------------------------------------------ patches and planes


def test_unpatchify_inverts_patchify_and_patches_stay_in_their_plane():
    z = randn(2, D, F, COLS)
    tokens = patchify_motion(z, 2)
    assert tuple(tokens.shape) == (2, 2 * 6, 2 * 2 * D)
    assert torch.equal(unpatchify_motion(tokens, 2, 2), z)
    # token (i, j) holds exactly frames 2i.. and columns 2j..: columns 0..7 are the x-plane (j < 4)
    patch = tokens.view(2, 2, 6, 2, 2, D)[:, 1, 4]  # (B, p1, p2, D): time patch 1, first y-plane column
    assert torch.equal(patch.permute(0, 3, 1, 2), z[:, :, 2:4, 8:10])


def test_a_y_plane_perturbation_reaches_only_y_plane_tokens_then_the_whole_output():
    model = tiny(num_classes=5)
    x = randn(2, D, F, COLS)
    y = x.clone()
    y[..., 8:] += 1.0  # the y-plane (columns W'=8 .. 11)
    embed = lambda v: model.x_embedder(v[:, :, None])[:, 0].view(2, 2, 6, -1)  # noqa: E731
    diff = (embed(y) - embed(x)).abs().amax(dim=(0, 1, 3))  # per column patch
    assert torch.count_nonzero(diff[:4]) == 0 and (diff[4:] > 0).all()
    cond = Cond(labels=torch.tensor([1, 2]), content_frame=frame())
    moved = (model(y, T, cond) - model(x, T, cond))[..., :8]  # the x-plane output hears it via attention
    assert moved.abs().amax() > 1e-6


def test_patches_that_would_straddle_the_planes_raise():
    with pytest.raises(ValueError, match="latent_w"):
        MotionDiT(**{**TINY, "latent_w": 3, "latent_h": 5})  # W'+H' = 8 is even, but a patch straddles
    with pytest.raises(ValueError, match="num_frames"):
        MotionDiT(**{**TINY, "num_frames": 5})
    with pytest.raises(ValueError, match="content_size"):
        MotionDiT(**{**TINY, "content_size": (8, 10)})
    with pytest.raises(ValueError, match="hidden_size"):
        MotionDiT(**{**TINY, "hidden_size": 36, "num_heads": 2})  # not divisible by 8
