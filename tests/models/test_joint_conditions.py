"""Image-video joint training conditions each appended image on its own label / caption, never the clip's
(Latte's ``latte_img.py``): :meth:`Cond.per_frame`, and every model that supports joint training."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.models.latte_helpers import randomize_zero_init, video
from tests.models.test_latte_switches import TIMES, make_cond, model_for
from vidgen.conditioning import Cond

# ------------------------------------------------------------------------------------ Cond.per_frame


def test_per_frame_gives_clip_frames_the_clip_condition_and_images_their_own():
    cond = Cond(
        labels=torch.tensor([5, 6]),
        text=torch.arange(2 * 3 * 1.0).view(2, 3, 1),
        num_video_frames=3,
        images=Cond(labels=torch.tensor([[1, 2], [3, 4]]), text=-torch.ones(2, 2, 3, 1)),
    )
    frames = cond.per_frame(5)
    assert frames.labels.tolist() == [5, 5, 5, 1, 2, 6, 6, 6, 3, 4]  # sample-major: (b f)
    assert frames.text.shape == (10, 3, 1) and frames.num_video_frames is None and frames.images is None
    torch.testing.assert_close(frames.text[1], cond.text[0])
    torch.testing.assert_close(frames.text[9], cond.images.text[1, 1])
    # without images every frame is the clip's
    assert Cond(labels=torch.tensor([5, 6])).per_frame(2).labels.tolist() == [5, 5, 6, 6]
    assert cond.has_own_frame_conditions(5) and not cond.has_own_frame_conditions(3)
    assert not Cond(num_video_frames=3).has_own_frame_conditions(5)  # unconditional: nothing differs


def test_per_frame_refuses_images_without_their_own_condition():
    with pytest.raises(ValueError, match=r"own labels \(cond.images.labels\)"):
        Cond(labels=torch.tensor([5, 6]), num_video_frames=3).per_frame(5)
    with pytest.raises(ValueError, match="shape"):
        Cond(
            labels=torch.tensor([5, 6]), num_video_frames=3, images=Cond(labels=torch.zeros(2, 3))
        ).per_frame(5)
    with pytest.raises(ValueError, match="own text"):
        Cond(
            labels=torch.tensor([5, 6]),
            text=torch.zeros(2, 3, 1),
            num_video_frames=3,
            images=Cond(labels=torch.zeros(2, 2, dtype=torch.long)),
        ).per_frame(5)


def test_cond_batch_operations_carry_the_images():
    cond = Cond(
        labels=torch.tensor([5, 6]), num_video_frames=3, images=Cond(labels=torch.tensor([[1, 2], [3, 4]]))
    )
    assert cond.repeat(2).images.labels.tolist() == [[1, 2], [3, 4], [1, 2], [3, 4]]
    assert cond.select(torch.tensor([1])).images.labels.tolist() == [[3, 4]]
    assert cond.cat(cond).images.labels.shape == (4, 2) and cond.to("cpu").images is not None
    with pytest.raises(ValueError, match="image conditions"):
        cond.cat(replace(cond, images=None))


# ---------------------------------------------------------------------------------------------- Latte

LATTE_CASES = [
    (v, inj, cnd) for v in (1, 2, 3, 4) for inj in ("adaln", "tokens") for cnd in ("class", "text")
]


def _changed_image(cond: Cond, conditioning: str, k: int) -> Cond:
    """``cond`` with image ``k``'s own label / caption of sample 0 changed."""
    images = cond.images
    if conditioning == "class":
        labels = images.labels.clone()
        labels[0, k] = (labels[0, k] + 1) % 3
        return replace(cond, images=replace(images, labels=labels))
    states = images.text.clone()
    states[0, k] = states[0, k] + 1.0
    return replace(cond, images=replace(images, text=states))


def _changed_clip(cond: Cond, conditioning: str) -> Cond:
    """``cond`` with the clip's own label / caption of sample 0 changed (the images' kept)."""
    if conditioning == "class":
        return replace(cond, labels=torch.tensor([2, 3]))
    states = cond.text.clone()
    states[0] = states[0] + 1.0
    return replace(cond, text=states)


@pytest.mark.parametrize(("variant", "injection", "conditioning"), LATTE_CASES)
def test_latte_image_output_follows_its_own_condition_only(variant, injection, conditioning):
    """Changing image k's own label / caption changes image k's output and nothing else; changing the
    clip's changes the clip frames and no image (the bug: every image carried the clip's condition)."""
    model = model_for(conditioning, variant=variant, depth=4, injection=injection)
    randomize_zero_init(model)
    x = video(f=7)  # 4 clip frames + 3 images
    cond = make_cond(conditioning, num_video_frames=4, num_images=3)
    with torch.no_grad():
        out = model(x, TIMES, cond)
        for k in range(3):
            changed = model(x, TIMES, _changed_image(cond, conditioning, k)) - out
            moved = changed.abs().amax(dim=(1, 3, 4))  # (B, F): which frames of which sample moved
            assert moved[0, 4 + k] > 1e-6, f"image {k}'s own condition does not reach it"
            moved[0, 4 + k] = 0
            assert moved.max() == 0, f"image {k}'s condition reached other frames: {moved}"
        moved = (model(x, TIMES, _changed_clip(cond, conditioning)) - out).abs().amax(dim=(1, 3, 4))
        assert moved[0, :4].min() > 1e-6 and moved[0, 4:].max() == 0 and moved[1].max() == 0


@pytest.mark.parametrize("injection", ["adaln", "tokens"])
def test_latte_variant3_temporal_sublayer_adds_nothing_to_images(injection):
    """Variant 3's temporal sub-layer (attention and its output projection bias) never touches the
    appended images: perturbing all its weights leaves every image frame's output unchanged."""
    model = model_for("class", variant=3, injection=injection)
    randomize_zero_init(model)
    x = video(f=6)
    cond = make_cond("class", num_video_frames=4, num_images=2)
    with torch.no_grad():
        out = model(x, TIMES, cond)
        gen = torch.Generator().manual_seed(9)
        for block in model.blocks:
            for p in block.attn_temporal.parameters():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
        after = model(x, TIMES, cond)
    torch.testing.assert_close(after[:, :, 4:], out[:, :, 4:], rtol=0, atol=0)
    assert not torch.allclose(after[:, :, :4], out[:, :, :4])


# ------------------------------------------------------------------------------------ U-Net models

UNET_WIDTH = 32  # the tiny U-Net's cross-attention width


def _unet(temporal: str, **kwargs: object):
    from vidgen.models import LatentUNet

    torch.manual_seed(0)
    model = LatentUNet(temporal=temporal, size="tiny", in_channels=4, input_size=8, **kwargs).eval()
    if temporal == "attention":  # zero-initialised output projections: open them
        for layer in model.temporal_layers:
            torch.nn.init.normal_(layer.attn.proj.weight, std=0.1)
    return model


@pytest.mark.parametrize("temporal", ["shift", "attention", "none"])
@pytest.mark.parametrize("use_text_mask", [False, True])
def test_unet_image_output_follows_its_own_caption_only(temporal, use_text_mask):
    """Latent-Shift / Latent-VDM / per-frame U-Net: each appended image cross-attends to its own caption's
    states; the clip's caption reaches the clip frames only (the bug repeated the clip's text per frame)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 5, 8, 8, generator=gen)  # 3 clip frames + 2 images
    t = torch.tensor([10, 700])
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    images = Cond(
        text=torch.randn(2, 2, 6, UNET_WIDTH, generator=gen), text_mask=mask[:, None].expand(2, 2, 6)
    )
    cond = Cond(
        text=torch.randn(2, 6, UNET_WIDTH, generator=gen), text_mask=mask, num_video_frames=3, images=images
    )
    model = _unet(temporal, use_text_mask=use_text_mask)
    with torch.no_grad():
        out = model(x, t, cond)
        for k in range(2):
            text = images.text.clone()
            text[0, k] += 1.0
            moved = (
                (model(x, t, replace(cond, images=replace(images, text=text))) - out)
                .abs()
                .amax(dim=(1, 3, 4))
            )
            assert moved[0, 3 + k] > 1e-4
            moved[0, 3 + k] = 0
            assert moved.max() == 0
        clip_text = cond.text.clone()
        clip_text[0] += 1.0
        moved = (model(x, t, replace(cond, text=clip_text)) - out).abs().amax(dim=(1, 3, 4))
        assert moved[0, :3].min() > 1e-4 and moved[0, 3:].max() == 0 and moved[1].max() == 0
        # image k equals the model on that image alone under its own caption
        alone = model(x[:, :, 3:4], t, Cond(text=images.text[:, 0], text_mask=mask))
    torch.testing.assert_close(out[:, :, 3:4], alone, atol=1e-5, rtol=1e-5)
