"""VDM's 3D U-Net (``model=vdm_unet3d``): the information-flow guarantees of the ``vidgen/shared`` VDM spec,
Sec. 6 (T1-T9), on a small float64 model in eval mode with every zero-initialised parameter randomised
(N(0, 0.05)), so that no leaking path is silently switched off by its initialisation.

T1-T3 also run on deliberately broken copies of the model (GroupNorm over frames, a temporal pre-norm over
frames, the mask applied in one temporal layer only, the mask's polarity flipped): each check must fail on
them, which shows it is not vacuous.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.models.latte_helpers import randomize_zero_init
from vidgen.conditioning import Cond
from vidgen.conditioning.conditioners import ClassConditioner
from vidgen.models.vdm_unet3d import SpaceTimeBlock, VDMUNet3D
from vidgen.nn.factorised_attention import SpatialAttention, TemporalSelfAttention
from vidgen.nn.frame_norm import FrameGroupNorm
from vidgen.nn.resblock3d import ResBlock3D, SpatialDownsample, SpatialUpsample
from vidgen.nn.rope import apply_rope, rope_angles
from vidgen.nn.temporal_position import (
    TEMPORAL_POSITIONS,
    ShawPosition,
    T5Bias,
    build_temporal_position,
    t5_buckets,
)

#: two levels (8x8 and 4x4 feature maps, both with spatial + temporal attention), 16 / 32 channels
SMALL = dict(
    size="tiny",
    base_channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8, 4),
    head_dim=8,
    emb_dim=32,
    norm_groups=4,
    in_channels=2,
    input_size=8,
    num_frames=4,
)
CLIP, IMAGES = 4, 3  # joint training: 4 clip frames + 3 appended images
NUM_CLASSES, TEXT_DIM, TEXT_LEN = 3, 8, 5
CONDITIONINGS = ("none", "class", "text")
T = torch.tensor([3.25, -7.5], dtype=torch.float64)  # log-SNRs (floats) of the two samples
ATOL = 1e-10


def small_model(conditioning: str = "none", **overrides: object) -> VDMUNet3D:
    """A float64 eval-mode model with every all-zero parameter randomised (N(0, 0.05))."""
    torch.manual_seed(0)
    kwargs = {**SMALL, **overrides}
    if conditioning == "class":
        kwargs["num_classes"] = NUM_CLASSES
    elif conditioning == "text":
        kwargs.update(text_dim=TEXT_DIM, text_pool_heads=2)
    model = VDMUNet3D(**kwargs).double().eval()
    randomize_zero_init(model, std=0.05)
    return model


def clips(b: int = 2, f: int = CLIP + IMAGES, h: int = 8, seed: int = 0) -> torch.Tensor:
    """``(b, 2, f, h, h)`` float64 standard normal."""
    return torch.randn(b, 2, f, h, h, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def joint_cond(conditioning: str, clip: int = CLIP, images: int = IMAGES, batch: int = 2) -> Cond:
    """The condition of a joint-training batch: the clip's and each appended image's own."""
    gen = torch.Generator().manual_seed(5)
    if conditioning == "none":
        return Cond(num_video_frames=clip)
    if conditioning == "class":
        labels = torch.tensor([0, 2])
        own = torch.randint(0, NUM_CLASSES + 1, (batch, images), generator=gen)  # the null class included
        own[0] = torch.arange(images) % NUM_CLASSES
        return Cond(labels=labels, num_video_frames=clip, images=Cond(labels=own))
    mask = torch.tensor([[True] * 3 + [False] * 2, [True] * TEXT_LEN])
    text = torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=gen, dtype=torch.float64)
    own = torch.randn(batch, images, TEXT_LEN, TEXT_DIM, generator=gen, dtype=torch.float64)
    own_mask = mask[:, None].expand(batch, images, TEXT_LEN).clone()
    own_mask[0, 1, 1:] = False
    return Cond(
        text=text,
        text_mask=mask,
        num_video_frames=clip,
        images=Cond(text=own, text_mask=own_mask),
    )


def clip_alone(cond: Cond) -> Cond:
    """The clip's own condition, without the images."""
    return replace(cond, num_video_frames=None, images=None)


def image_alone(cond: Cond, k: int) -> Cond | None:
    """Image ``k``'s own condition as the condition of a one-frame video."""
    if cond.images is None:
        return None
    fields = {name: getattr(cond.images, name) for name in ("labels", "text", "text_mask")}
    return Cond(**{name: value[:, k] for name, value in fields.items() if value is not None})


# ------------------------------------------------------------------------ the T1-T3 measurements


def joint_invariance_error(model: nn.Module, conditioning: str = "none") -> float:
    """T1: max |out[:, :, :F] of the F+K frames - the model on the F-frame clip alone|."""
    x, cond = clips(), joint_cond(conditioning)
    with torch.no_grad():
        joint = model(x, T, cond)
        alone = model(x[:, :, :CLIP], T, clip_alone(cond))
    return (joint[:, :, :CLIP] - alone).abs().max().item()


def image_consistency_error(model: nn.Module, conditioning: str = "none") -> float:
    """T2: max over images k of |out[:, :, F+k] - the model on image k alone, as a 1-frame video under its
    own condition|."""
    x, cond = clips(), joint_cond(conditioning)
    errors = []
    with torch.no_grad():
        joint = model(x, T, cond)
        for k in range(IMAGES):
            frame = CLIP + k
            alone = model(x[:, :, frame : frame + 1], T, image_alone(cond, k))
            errors.append((joint[:, :, frame : frame + 1] - alone).abs().max().item())
    return max(errors)


def cross_mask_gradients(model: nn.Module, conditioning: str = "none") -> tuple[float, float]:
    """T3: ``(leak, flow)``. ``leak`` = max |d out[F+k] / d x[j]| over images k and frames j != F+k, and of
    |d out[:F] / d x[F:]|: exactly 0 for a correct model. ``flow`` = max |d out[0] / d x[1:F]|, the clip's
    own frame mixing, which must not be 0 (else the check proves nothing)."""
    x, cond = clips().requires_grad_(True), joint_cond(conditioning)
    weights = torch.randn(model(x, T, cond).shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    leak, flow = 0.0, 0.0
    for frames in [range(CLIP), *([CLIP + k] for k in range(IMAGES)), [0]]:
        out = model(x, T, cond)
        index = torch.tensor(list(frames))
        (grad,) = torch.autograd.grad((out[:, :, index] * weights[:, :, index]).sum(), x)
        outside = torch.ones(x.shape[2], dtype=torch.bool)
        if list(frames) == [0]:
            flow = grad[:, :, 1:CLIP].abs().max().item()
            continue
        outside[index if len(index) == 1 else slice(0, CLIP)] = False
        leak = max(leak, grad[:, :, outside].abs().max().item())
    return leak, flow


# --------------------------------------------------------------------------------- broken models


class _FramePooledNorm(nn.Module):
    """A temporal pre-norm whose statistics run over (frames, channels) of a position: the bug."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (N, F, C)
        return F.layer_norm(tokens, tokens.shape[1:]) * self.norm.weight + self.norm.bias


def _unmasked(layer: TemporalSelfAttention) -> None:
    forward = layer.forward
    layer.forward = lambda x, allowed=None: forward(x, None)


def _flipped(layer: TemporalSelfAttention) -> None:
    forward = layer.forward
    layer.forward = lambda x, allowed=None: forward(x, None if allowed is None else ~allowed)


@contextmanager
def broken(model: VDMUNet3D, bug: str) -> Iterator[nn.Module]:
    """A copy of ``model`` with ``bug`` (FrameGroupNorm's class patch is undone on exit)."""
    model = copy.deepcopy(model)
    layers = model.temporal_layers()
    original = FrameGroupNorm.forward
    if bug == "groupnorm_over_frames":
        FrameGroupNorm.forward = nn.GroupNorm.forward  # statistics over (C/g, F, H, W)
    elif bug == "temporal_norm_over_frames":
        for layer in layers:
            layer.norm = _FramePooledNorm(layer.norm)
    elif bug == "mask_in_first_layer_only":
        for layer in layers[1:]:
            _unmasked(layer)
    elif bug == "mask_in_all_but_last_layer":
        _unmasked(layers[-1])
    elif bug == "mask_polarity":
        for layer in layers:
            _flipped(layer)
    else:
        raise ValueError(bug)
    try:
        yield model
    finally:
        FrameGroupNorm.forward = original


BUGS = (
    "groupnorm_over_frames",
    "temporal_norm_over_frames",
    "mask_in_first_layer_only",
    "mask_in_all_but_last_layer",
    "mask_polarity",
)

# ------------------------------------------------------------------------------------ T1, T2, T3


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t1_joint_training_keeps_the_clip_as_it_is_alone(temporal_pos: str, conditioning: str) -> None:
    model = small_model(conditioning, temporal_pos=temporal_pos)
    assert joint_invariance_error(model, conditioning) < ATOL


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t2_each_image_is_the_model_on_that_image_alone(temporal_pos: str, conditioning: str) -> None:
    model = small_model(conditioning, temporal_pos=temporal_pos)
    assert image_consistency_error(model, conditioning) < ATOL


@pytest.mark.parametrize("conditioning", ["none", "class"])
@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t3_gradients_across_the_mask_are_exactly_zero(temporal_pos: str, conditioning: str) -> None:
    leak, flow = cross_mask_gradients(small_model(conditioning, temporal_pos=temporal_pos), conditioning)
    assert leak == 0.0
    assert flow > 1e-4, "the clip frames do not mix: the check would prove nothing"


# CI checks the mask-polarity mutant; the other four (same checks, one leak each) run under make test-slow
@pytest.mark.parametrize(
    "bug", [b if b == "mask_polarity" else pytest.param(b, marks=pytest.mark.slow) for b in BUGS]
)
def test_t1_t2_t3_catch_the_bugs_they_target(bug: str) -> None:
    """Every check fails on a model with a frame leak (errors far above the 1e-10 tolerance)."""
    model = small_model("class")
    with broken(model, bug) as bad:
        assert joint_invariance_error(bad, "class") > 1e-3
        assert image_consistency_error(bad, "class") > 1e-3
        assert cross_mask_gradients(bad, "class")[0] > 1e-3
    # the class patch is undone: the model is correct again
    assert joint_invariance_error(model, "class") < ATOL


# ------------------------------------------------------------------------------ T4, T5 factorisation


def _only_frame_changes(module: nn.Module, args: tuple, frame: int) -> tuple[float, float]:
    """``(inside, outside)``: the largest output change at ``frame`` and elsewhere when frame ``frame`` of
    the module's first input is perturbed."""
    x, rest = args[0], args[1:]
    bumped = x.clone()
    bumped[:, :, frame] += torch.randn(bumped[:, :, frame].shape, dtype=x.dtype)
    with torch.no_grad():
        diff = (module(bumped, *rest) - module(x, *rest)).abs()
    others = torch.ones(x.shape[2], dtype=torch.bool)
    others[frame] = False
    return diff[:, :, frame].max().item(), diff[:, :, others].max().item()


def test_t4_spatial_layers_never_mix_frames() -> None:
    """Every ResBlock, spatial attention, resampler and frame-local norm of the model, fed the input it sees
    in a real forward pass: perturbing frame 2 changes frame 2 only (exactly)."""
    model = small_model("class")
    kinds = (ResBlock3D, SpatialAttention, SpatialDownsample, SpatialUpsample, FrameGroupNorm)
    seen: list[tuple[nn.Module, tuple]] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args)))
        for m in model.modules()
        if isinstance(m, kinds)
    ]
    x, cond = clips(), joint_cond("class")
    with torch.no_grad():
        model(x, T, cond)
    for handle in handles:
        handle.remove()
    assert {type(m) for m, _ in seen} == set(kinds)
    for module, args in seen:
        inside, outside = _only_frame_changes(module, args, frame=2)
        assert inside > 0 and outside == 0.0, type(module).__name__


def test_t4_without_its_temporal_attentions_the_model_is_a_per_frame_image_model() -> None:
    """conv_in, skips, every block and the output head together: no frame mixing anywhere else."""
    model = small_model("class")
    per_frame = copy.deepcopy(model)
    for block in per_frame.modules():
        if isinstance(block, SpaceTimeBlock):
            block.temporal = None
    cond = replace(joint_cond("class"), num_video_frames=None, images=None)
    inside, outside = _only_frame_changes(lambda x: per_frame(x, T, cond), (clips(),), frame=1)
    assert inside > 0 and outside == 0.0
    # while the real model mixes them
    inside, outside = _only_frame_changes(lambda x: model(x, T, cond), (clips(),), frame=1)
    assert outside > 1e-4


@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t5_temporal_attention_never_mixes_spatial_positions(temporal_pos: str) -> None:
    model = small_model(temporal_pos=temporal_pos)
    layer = model.temporal_layers()[0]
    x = torch.randn(2, 16, 6, 4, 5, dtype=torch.float64)
    bumped = x.clone()
    bumped[:, :, 3, 1, 2] += 1.0
    with torch.no_grad():
        diff = (layer(bumped) - layer(x)).abs()
    assert diff[:, :, :, 1, 2].max() > 1e-4
    diff[:, :, :, 1, 2] = 0
    assert diff.max() == 0.0


# ------------------------------------------------------------------------------ T6, T7 positions


def _is_toeplitz(matrix: torch.Tensor) -> bool:
    return torch.equal(matrix[1:, 1:], matrix[:-1, :-1])


def _t5_reference(relative_position: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """T5's ``_relative_position_bucket`` (bidirectional) as the T5 code writes it, ``n = -relative``."""
    ret = 0
    n = -relative_position
    num_buckets //= 2
    ret += (n < 0).long() * num_buckets
    n = n.abs()
    max_exact = num_buckets // 2
    is_small = n < max_exact
    val_if_large = (
        max_exact
        + (
            torch.log(n.float() / max_exact)
            / torch.log(torch.tensor(max_distance / max_exact))
            * (num_buckets - max_exact)
        ).long()
    )
    val_if_large = torch.minimum(val_if_large, torch.full_like(val_if_large, num_buckets - 1))
    return ret + torch.where(is_small, n, val_if_large)


def test_t6_relative_positions_depend_on_offsets_only() -> None:
    shaw = ShawPosition(head_dim=4, max_distance=3)
    index = shaw.table_index(9)
    offsets = torch.arange(9)[None] - torch.arange(9)[:, None]
    assert _is_toeplitz(index) and torch.equal(index, offsets.clamp(-3, 3) + 3)  # clipped beyond R

    t5 = T5Bias(num_heads=2, num_buckets=32, max_distance=32)
    buckets = t5.bucket_index(70)
    assert _is_toeplitz(buckets)
    rel = torch.arange(-100, 101)
    torch.testing.assert_close(t5_buckets(rel, 32, 32), _t5_reference(rel, 32, 32), rtol=0, atol=0)
    assert buckets[0, 1] >= 16 and buckets[1, 0] < 16  # later keys in the upper half: the sign is T5's

    q, k = torch.randn(2, 8, dtype=torch.float64).unbind(0)
    cos, sin = rope_angles(torch.arange(20), 8, dtype=torch.float64)

    def score(i: int, j: int) -> torch.Tensor:
        return apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j])

    for i, j, s in [(0, 3, 5), (7, 2, 11), (4, 4, 9)]:
        torch.testing.assert_close(score(i, j), score(i + s, j + s), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t6_the_model_runs_for_any_frame_count(temporal_pos: str) -> None:
    # 16 frames go beyond the distance 5 (Shaw's clipped rows, T5's last buckets)
    model = small_model(temporal_pos=temporal_pos, relative_max_distance=5, t5_num_buckets=8)
    with torch.no_grad():
        for frames in (1, 5, 16, 2 * SMALL["num_frames"]):
            out = model(clips(b=1, f=frames), T[:1])
            assert out.shape == (1, 2, frames, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("temporal_pos", TEMPORAL_POSITIONS)
def test_t7_the_frame_order_is_used_unless_temporal_pos_is_none(temporal_pos: str) -> None:
    """Permuting the input frames of one temporal attention layer (and of the whole model) permutes the
    output only for ``none``: every position strategy really tells frames apart."""
    model = small_model(temporal_pos=temporal_pos)
    layer = model.temporal_layers()[0]
    perm = torch.tensor([2, 0, 4, 1, 3])
    x = torch.randn(1, 16, 5, 3, 3, dtype=torch.float64)
    v = clips(b=1, f=5)
    with torch.no_grad():
        layer_gap = (layer(x[:, :, perm]) - layer(x)[:, :, perm]).abs().max().item()
        model_gap = (model(v[:, :, perm], T[:1]) - model(v, T[:1])[:, :, perm]).abs().max().item()
    if temporal_pos == "none":
        assert layer_gap < 1e-12 and model_gap < 1e-12
    else:
        assert layer_gap > 1e-6 and model_gap > 1e-6


# ---------------------------------------------------------------------------------- T8 resampling


def test_t8_resampling_changes_height_and_width_only() -> None:
    model = small_model()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv3d)):
        assert conv.kernel_size[0] == 1 and conv.stride[0] == 1 and conv.padding[0] == 0
    for frames in (5, 1):
        shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

        def record(module: nn.Module, args: tuple, out: torch.Tensor, shapes: list = shapes) -> None:
            shapes.append((type(module).__name__, tuple(args[0].shape), tuple(out.shape)))

        handles = [
            m.register_forward_hook(record)
            for m in model.modules()
            if isinstance(m, SpaceTimeBlock | SpatialDownsample | SpatialUpsample)
        ]
        with torch.no_grad():
            out = model(clips(b=1, f=frames), T[:1])
        for handle in handles:
            handle.remove()
        assert out.shape == (1, 2, frames, 8, 8)
        assert all(i[2] == frames and o[2] == frames for _, i, o in shapes)
        resamplers = [(n, i[3:], o[3:]) for n, i, o in shapes if n != "SpaceTimeBlock"]
        assert resamplers == [("SpatialDownsample", (8, 8), (4, 4)), ("SpatialUpsample", (4, 4), (8, 8))]


# -------------------------------------------------------------------------------- T9 conditioning


def test_t9_the_output_follows_t_as_a_float() -> None:
    model = small_model()
    x = clips(b=1, f=3)
    with torch.no_grad():
        outs = [model(x, torch.tensor([t], dtype=torch.float64)) for t in (-20.0, 0.25, 0.5, 20.0)]
        outs.append(model(x, torch.tensor([500])))  # an integer step works as well
    for a in range(len(outs)):
        for b in range(a + 1, len(outs)):
            assert (outs[a] - outs[b]).abs().max() > 1e-6


def test_t9_the_null_class_is_the_zero_embedding() -> None:
    """c = 0: the null row is zero and stays so (no gradient); with null labels the class model computes
    exactly what the same weights compute without a class table."""
    model = small_model("class")
    null = model.label_embed.weight[NUM_CLASSES]
    assert torch.count_nonzero(null) == 0
    unconditional = VDMUNet3D(**SMALL).double().eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("label_embed.")}
    unconditional.load_state_dict(state, strict=True)
    x = clips(b=2, f=3)
    nulls = Cond(labels=torch.full((2,), NUM_CLASSES))
    out = model(x, T, nulls)
    torch.testing.assert_close(out, unconditional(x, T), rtol=0, atol=0)
    out.square().sum().backward()
    assert torch.count_nonzero(model.label_embed.weight.grad) == 0


def test_t9_with_p_uncond_1_the_label_has_no_effect() -> None:
    model = small_model("class")
    conditioner = ClassConditioner(NUM_CLASSES, drop_prob=1.0)
    x = clips(b=2, f=3)
    outs = []
    for labels in ([0, 1], [2, 0]):
        cond = conditioner({"label": torch.tensor(labels)}, train=True)
        out = model(x, T, cond)
        outs.append(out.detach())
        (grad,) = torch.autograd.grad(out.square().sum(), model.label_embed.weight)
        assert torch.count_nonzero(grad) == 0
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    with torch.no_grad():  # while real labels do matter
        assert (model(x, T, Cond(labels=torch.tensor([0, 1]))) - outs[0]).abs().max() > 1e-6


def test_t9_text_is_pooled_over_real_tokens_only() -> None:
    model = small_model("text")
    x, cond = clips(b=2, f=3), clip_alone(joint_cond("text"))
    with torch.no_grad():
        out = model(x, T, cond)
        padded = cond.text.clone()
        padded[0, 3:] += 10.0  # sample 0's padding tokens
        torch.testing.assert_close(model(x, T, replace(cond, text=padded)), out, rtol=0, atol=0)
        real = cond.text.clone()
        real[0, 1] += 1.0
        moved = (model(x, T, replace(cond, text=real)) - out).abs().amax(dim=(1, 2, 3, 4))
    assert moved[0] > 1e-6 and moved[1] == 0


# ------------------------------------------------------------------- each image's own condition


def _changed_image(cond: Cond, conditioning: str, k: int) -> Cond:
    images = cond.images
    if conditioning == "class":
        labels = images.labels.clone()
        labels[0, k] = (labels[0, k] + 1) % NUM_CLASSES
        return replace(cond, images=replace(images, labels=labels))
    text = images.text.clone()
    text[0, k, 0] += 1.0
    return replace(cond, images=replace(images, text=text))


def _changed_clip(cond: Cond, conditioning: str) -> Cond:
    if conditioning == "class":
        return replace(cond, labels=torch.tensor([1, 2]))
    text = cond.text.clone()
    text[0, 0] += 1.0
    return replace(cond, text=text)


@pytest.mark.parametrize("conditioning", ["class", "text"])
def test_an_image_output_follows_its_own_condition_only(conditioning: str) -> None:
    """Changing image k's own label / caption changes image k's output and nothing else; changing the
    clip's changes the clip frames and no image (the bug: every image carried the clip's condition)."""
    model = small_model(conditioning)
    x, cond = clips(), joint_cond(conditioning)
    with torch.no_grad():
        out = model(x, T, cond)
        for k in range(IMAGES):
            moved = (model(x, T, _changed_image(cond, conditioning, k)) - out).abs().amax(dim=(1, 3, 4))
            assert moved[0, CLIP + k] > 1e-6, f"image {k}'s own condition does not reach it"
            moved[0, CLIP + k] = 0
            assert moved.max() == 0, f"image {k}'s condition reached other frames: {moved}"
        moved = (model(x, T, _changed_clip(cond, conditioning)) - out).abs().amax(dim=(1, 3, 4))
    assert moved[0, :CLIP].min() > 1e-6 and moved[0, CLIP:].max() == 0 and moved[1].max() == 0


def test_all_frames_independent_images_with_num_video_frames_0() -> None:
    model = small_model("class")
    x = clips(f=3)
    own = torch.tensor([[0, 1, 2], [2, 3, 1]])
    cond = Cond(labels=torch.tensor([0, 0]), num_video_frames=0, images=Cond(labels=own))
    with torch.no_grad():
        out = model(x, T, cond)
        for k in range(3):
            alone = model(x[:, :, k : k + 1], T, Cond(labels=own[:, k]))
            assert (out[:, :, k : k + 1] - alone).abs().max() < ATOL


def test_wrong_conditions_are_refused() -> None:
    x = clips(b=2, f=2)
    with pytest.raises(ValueError, match="num_classes"):
        small_model()(x, T, Cond(labels=torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="no labels"):
        small_model("class")(x, T)
    with pytest.raises(ValueError, match=r"cond\.text is missing"):
        small_model("text")(x, T, Cond())
    with pytest.raises(ValueError, match="own labels"):
        small_model("class")(x, T, Cond(labels=torch.tensor([0, 1]), num_video_frames=1))
    with pytest.raises(ValueError, match="divisible"):
        small_model()(clips(b=2, f=2, h=5), T)


# ----------------------------------------------------------------------------- layers in isolation


def test_positions_build_by_name_and_isolated_frames_attend_to_themselves() -> None:
    """With the joint-training mask an isolated frame's attention output is exactly its value (+ a^V_0)."""
    q, k, v = torch.randn(3, 2, 2, 4, 6, dtype=torch.float64).unbind(0)
    allowed = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
    for kind in TEMPORAL_POSITIONS:
        position = build_temporal_position(kind, head_dim=6, num_heads=2).double()
        assert position.kind == kind
        out = position.attend(q, k, v, allowed)
        expected = v[:, :, 2:]
        if kind == "shaw":
            expected = expected + position.value_table[position.max_distance]
        torch.testing.assert_close(out[:, :, 2:], expected, rtol=0, atol=1e-15)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = small_model("class")
    model.train()  # dropout is 0: the same function, with recomputation
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing = True
    x, cond = clips(), joint_cond("class")
    grads = []
    for m in (model, checkpointed):
        m.zero_grad()
        m(x, T, cond).square().sum().backward()
        grads.append([p.grad.clone() for p in m.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
