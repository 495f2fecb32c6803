"""Latent-Shift / Latent-VDM / per-frame U-Net video denoisers (vidgen.models.latent_unet), tiny sizes on CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from hydra.utils import instantiate

from tests.conftest import attention_heads, compose_config
from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.lit.ema import make_ema_copy
from vidgen.models import LatentUNet
from vidgen.models.latent_unet import unet_config
from vidgen.nn import (
    TemporalAttention,
    TemporalAttentionHook,
    TemporalShiftHook,
    resnet_blocks,
    spatial_transformers,
)

TINY = {"size": "tiny", "in_channels": 4, "input_size": 8}
WIDTH = 32  # the tiny size's default cross-attention width


def _model(temporal: str, **kwargs: object) -> LatentUNet:
    torch.manual_seed(0)
    return LatentUNet(temporal=temporal, **{**TINY, **kwargs}).eval()


def _plain(learn_sigma: bool = False) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(**unet_config("tiny", 4, 8 if learn_sigma else 4, 8, WIDTH)).eval()


def _inputs(batch: int = 2, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(batch, 4, frames, 8, 8, generator=generator), torch.tensor([10, 700][:batch])


def _per_frame(
    unet: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor | None = None
):
    """The image U-Net applied to every frame on its own: ``(B, C, F, H, W)``."""
    text = torch.zeros(x.shape[0], 1, WIDTH) if text is None else text
    frames = [unet(x[:, :, j], t, encoder_hidden_states=text).sample for j in range(x.shape[2])]
    return torch.stack(frames, dim=2)


def _temporal_params(model: LatentUNet) -> int:
    """``4C^2 + 6C`` per spatial transformer of width ``C`` (LayerNorm, qkv, proj)."""
    widths = [t.config.in_channels for t in spatial_transformers(model.unet)]
    return sum(4 * c * c + 6 * c for c in widths)


# ---------------------------------------------------------------------------------- parameters and keys
@pytest.mark.parametrize("temporal", ["shift", "none"])
def test_shift_and_2d_keep_the_image_unet_exactly(temporal: str) -> None:
    model, plain = _model(temporal), _plain()
    assert list(model.unet.state_dict()) == list(plain.state_dict())
    assert list(model.state_dict()) == [f"unet.{k}" for k in plain.state_dict()]
    assert model.num_params() == sum(p.numel() for p in plain.parameters()) == 792_964
    assert model.num_temporal_hooks == (len(resnet_blocks(model.unet)) if temporal == "shift" else 0)
    assert model.num_temporal_hooks in (0, 8)


def test_vdm_adds_exactly_the_temporal_layers() -> None:
    model, plain = _model("attention"), _plain()
    keys = list(model.state_dict())
    assert [k for k in keys if k.startswith("unet.")] == [f"unet.{k}" for k in plain.state_dict()]
    extra = [k for k in keys if not k.startswith("unet.")]
    assert extra and all(k.startswith("temporal_layers.") for k in extra)
    assert len(model.temporal_layers) == len(spatial_transformers(model.unet)) == 4
    expected = sum(p.numel() for p in plain.parameters()) + _temporal_params(model)
    assert model.num_params() == expected == 822_596
    model.temporal_layers.requires_grad_(False)
    assert model.num_params() == 792_964 and model.num_params(trainable_only=False) == 822_596


def test_sd_size_counts_on_the_meta_device() -> None:
    with torch.device("meta"):
        shift = LatentUNet(temporal="shift", size="sd", in_channels=4, input_size=32)
        vdm = LatentUNet(temporal="attention", size="sd", in_channels=4, input_size=32)
    assert shift.num_params() == 859_520_964  # Stable Diffusion 1.x's U-Net
    assert len(resnet_blocks(shift.unet)) == shift.num_temporal_hooks == 22
    assert vdm.num_params() - shift.num_params() == _temporal_params(vdm) == 49_636_480
    assert (
        sorted(t.config.in_channels for t in spatial_transformers(vdm.unet))
        == [320] * 5 + [640] * 5 + [1280] * 6
    )


@pytest.mark.parametrize("temporal", ["shift", "attention", "none"])
def test_head_width_sets_the_heads_and_keeps_every_parameter(temporal: str) -> None:
    default, wide = _model(temporal), _model(temporal, head_width=32)
    # the tiny size's 8 heads per block (4 and 8 channels wide); one head per 32 channels with head_width=32
    assert {heads for _, heads in attention_heads(default.unet)} == {8}
    assert sorted(set(attention_heads(wide.unet))) == [(32, 1), (64, 2)]
    shapes = {k: v.shape for k, v in default.state_dict().items()}
    assert {k: v.shape for k, v in wide.state_dict().items()} == shapes
    assert wide.num_params() == default.num_params()
    if temporal == "attention":  # the temporal layers take the transformer's heads
        assert [layer.head_dim for layer in wide.temporal_layers] == [32] * 4
        assert [layer.head_dim for layer in default.temporal_layers] == [4, 4, 4, 8]
    # the same weights under the other head split: a different function (the heads are really used)
    wide.load_state_dict(default.state_dict())
    x, t = _inputs()
    with torch.no_grad():
        assert not torch.allclose(wide(x, t), default(x, t), atol=1e-4)


def test_head_width_at_sd_size_counts_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = LatentUNet(temporal="shift", size="sd", in_channels=4, input_size=32, head_width=64)
    assert model.num_params() == 859_520_964  # heads add no parameters
    assert sorted(set(attention_heads(model.unet))) == [(320, 5), (640, 10), (1280, 20)]


# ------------------------------------------------------------------------------------------ behaviour
def test_temporal_attention_layer_identity_then_position_aware() -> None:
    torch.manual_seed(0)
    layer = TemporalAttention(16, num_heads=2)
    assert sum(p.numel() for p in layer.parameters()) == 4 * 16 * 16 + 6 * 16
    x = torch.randn(2 * 4, 16, 3, 3)  # 2 clips of 4 frames
    with torch.no_grad():
        assert torch.equal(layer(x, 4), x)  # zero output projection: the identity
        torch.nn.init.normal_(layer.attn.proj.weight, std=0.2)
        out = layer(x, 4)
        reverse = torch.arange(8).view(2, 4).flip(1).flatten()  # frames in reverse order within each clip
        # without a temporal position the layer would be permutation-equivariant over frames; RoPE breaks it
        assert (layer(x[reverse], 4) - out[reverse]).abs().max() > 1e-3
        # clips of a batch stay apart
        torch.testing.assert_close(out[:4], layer(x[:4], 4))
    with pytest.raises(ValueError, match="even head width"):
        TemporalAttention(12, num_heads=4)


def test_vdm_and_2d_at_init_are_the_per_frame_image_model() -> None:
    x, t = _inputs()
    plain, vdm, flat = _plain(), _model("attention"), _model("none")
    vdm.unet.load_state_dict(plain.state_dict())
    flat.unet.load_state_dict(plain.state_dict())
    with torch.no_grad():
        reference = _per_frame(plain, x, t)
        out_vdm, out_2d = vdm(x, t), flat(x, t)
    assert out_vdm.shape == x.shape
    torch.testing.assert_close(out_2d, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_vdm, reference, atol=1e-5, rtol=1e-5)


def test_one_frame_shift_differs_from_2d() -> None:
    """Text-to-image with the video model: F = 1, the shifted channels are zeros, and that matters."""
    x, t = _inputs(frames=1)
    shift, flat = _model("shift"), _model("none")
    flat.unet.load_state_dict(shift.unet.state_dict())
    with torch.no_grad():
        out_shift, out_2d = shift(x, t), flat(x, t)
        # the hooked U-Net called directly (no video call in progress) is the same one-frame model
        direct = shift.unet(x[:, :, 0], t, encoder_hidden_states=torch.zeros(2, 1, WIDTH)).sample
    assert (out_shift - out_2d).abs().max() > 1e-3
    torch.testing.assert_close(direct, out_shift[:, :, 0])


def _frame_gradients(model: LatentUNet, frames: int = 5, target: int = 2) -> list[float]:
    """|d out[:, :, target] / d x[:, :, k]| summed, for every frame k."""
    x, t = _inputs(batch=1, frames=frames)
    x.requires_grad_(True)
    weights = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    (model(x, t[:1])[:, :, target] * weights).sum().backward()
    return [float(x.grad[:, :, k].abs().sum()) for k in range(frames)]


def test_frames_interact_only_through_the_temporal_module() -> None:
    grads_2d = _frame_gradients(_model("none"))
    assert grads_2d[2] > 0 and [g for k, g in enumerate(grads_2d) if k != 2] == [0.0] * 4  # independent
    grads_shift = _frame_gradients(_model("shift"))
    assert (
        grads_shift[1] > 0 and grads_shift[3] > 0
    )  # neighbours reach frame 2 (stacked shifts reach further)
    vdm = _model("attention")
    assert _frame_gradients(vdm) == [0.0, 0.0, pytest.approx(grads_2d[2]), 0.0, 0.0]  # identity at init
    with torch.no_grad():
        for layer in vdm.temporal_layers:
            layer.attn.proj.weight.normal_(std=0.1)
    grads_vdm = _frame_gradients(vdm)
    assert all(g > 0 for g in grads_vdm)  # attention over the whole clip


def test_batch_samples_stay_separate_and_text_follows_its_sample() -> None:
    """Frames ride clip-major in the batch: each sample's frames see only its own frames and text."""
    x, t = _inputs()
    text = torch.randn(2, 5, WIDTH)
    for temporal in ("shift", "attention"):
        model = _model(temporal)
        if temporal == "attention":
            for layer in model.temporal_layers:
                torch.nn.init.normal_(layer.attn.proj.weight, std=0.1)
        with torch.no_grad():
            both = model(x, t, Cond(text=text))
            first = model(x[:1], t[:1], Cond(text=text[:1]))
            second = model(x[1:], t[1:], Cond(text=text[1:]))
            unconditional = model(x, t)
        torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-5, rtol=1e-5)
        assert (both - unconditional).abs().max() > 1e-4


def test_text_mask_is_used_only_when_asked() -> None:
    x, t = _inputs(batch=1)
    text = torch.randn(1, 4, WIDTH)
    mask = torch.tensor([[True, True, False, False]])
    masked_model, model = _model("shift", use_text_mask=True), _model("shift")
    with torch.no_grad():
        masked = masked_model(x, t[:1], Cond(text=text, text_mask=mask))
        truncated = masked_model(x, t[:1], Cond(text=text[:, :2]))
        ignored = model(x, t[:1], Cond(text=text, text_mask=mask))
        full = model(x, t[:1], Cond(text=text))
    torch.testing.assert_close(masked, truncated, atol=1e-5, rtol=1e-5)
    assert torch.equal(ignored, full) and (masked - full).abs().max() > 1e-5


@pytest.mark.parametrize("temporal", ["shift", "attention"])
def test_joint_training_images_are_one_frame_videos(temporal: str) -> None:
    """cond.num_video_frames = 3 of 5 frames: the clip is the model on the clip alone, each appended image
    the model on that image alone (F = 1)."""
    x, t = _inputs(frames=5)
    model = _model(temporal)
    if temporal == "attention":
        for layer in model.temporal_layers:
            torch.nn.init.normal_(layer.attn.proj.weight, std=0.1)
    with torch.no_grad():
        joint = model(x, t, Cond(num_video_frames=3))
        clip = model(x[:, :, :3], t)
        images = [model(x[:, :, k : k + 1], t) for k in (3, 4)]
        whole = model(x, t, Cond(num_video_frames=5))
        plain = model(x, t)
    torch.testing.assert_close(joint[:, :, :3], clip, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(joint[:, :, 3:], torch.cat(images, dim=2), atol=1e-5, rtol=1e-5)
    assert torch.equal(whole, plain)
    with pytest.raises(ValueError, match="num_video_frames"):
        model(x, t, Cond(num_video_frames=6))


def test_learn_sigma_doubles_the_output_channels() -> None:
    model = _model("shift", learn_sigma=True)
    x, t = _inputs()
    with torch.no_grad():
        assert model(x, t).shape == (2, 8, 3, 8, 8)
    assert list(model.unet.state_dict()) == list(_plain(learn_sigma=True).state_dict())


# ---------------------------------------------------------------------------- hooks, copies, checkpoints
@pytest.mark.parametrize("temporal", ["shift", "attention"])
def test_deepcopy_twin_hooks_its_own_unet(temporal: str) -> None:
    """The EMA twin (a deepcopy) must run its own hooks on its own U-Net with its own frame context."""
    model = _model(temporal)
    if temporal == "attention":
        for layer in model.temporal_layers:
            torch.nn.init.normal_(layer.attn.proj.weight, std=0.1)
    twin = make_ema_copy(model)
    hooks = [
        hook
        for module in twin.unet.modules()
        for hook in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        if isinstance(hook, TemporalShiftHook | TemporalAttentionHook)
    ]
    assert len(hooks) == model.num_temporal_hooks == twin.num_temporal_hooks > 0
    assert all(h.context is twin.frame_context and h.context is not model.frame_context for h in hooks)
    if temporal == "attention":
        assert [h.layer for h in hooks] == list(twin.temporal_layers)
    x, t = _inputs()
    flat = _model("none")
    flat.unet.load_state_dict(model.unet.state_dict())
    with torch.no_grad():
        reference, per_frame = model(x, t), flat(x, t)
        torch.testing.assert_close(twin(x, t), reference)
        twin.detach_temporal_hooks()  # the twin becomes the per-frame model; the original is untouched
        assert twin.num_temporal_hooks == 0
        torch.testing.assert_close(twin(x, t), per_frame)
        torch.testing.assert_close(model(x, t), reference)
        twin.attach_temporal_hooks()
        twin.attach_temporal_hooks()  # re-attaching replaces, never stacks
        assert twin.num_temporal_hooks == model.num_temporal_hooks
        torch.testing.assert_close(twin(x, t), reference)
        for p in twin.parameters():  # the twin's weights drive the twin only
            p.add_(0.01)
        assert (twin(x, t) - reference).abs().max() > 1e-4
        torch.testing.assert_close(model(x, t), reference)


@pytest.mark.parametrize("temporal", ["shift", "attention"])
def test_state_dict_round_trip_into_a_plain_unet(temporal: str, tmp_path: Path) -> None:
    model = _model(temporal)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # the temporal layers too
    torch.save(model.state_dict(), tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    plain = UNet2DConditionModel(**unet_config("tiny", 4, 4, 8, WIDTH))
    plain.load_state_dict({k.removeprefix("unet."): v for k, v in state.items() if k.startswith("unet.")})
    for key, value in plain.state_dict().items():
        assert torch.equal(value, state[f"unet.{key}"])
    again = LatentUNet(temporal=temporal, **TINY).eval()
    again.load_state_dict(state)  # strict
    x, t = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(again(x, t), model(x, t))


@pytest.mark.parametrize("temporal", ["shift", "attention"])
def test_gradient_checkpointing_gives_the_same_gradients(temporal: str) -> None:
    x, t = _inputs()
    grads = []
    for checkpointing in (False, True):
        model = _model(temporal, gradient_checkpointing=checkpointing).train()
        if temporal == "attention":
            for layer in model.temporal_layers:
                torch.nn.init.normal_(layer.attn.proj.weight, std=0.1)
        loss = (model(x, t) ** 2).mean()
        with torch.no_grad():  # another call with another frame layout before the backward pass
            model(x[:, :, :2], t)
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert model.unet.down_blocks[0].gradient_checkpointing
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------- config and errors
@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"temporal": "conv"}, "model.temporal"),
        ({"size": "XL"}, "model.size"),
        ({"shift": {"fraction": 0.7}}, "model.shift.fraction"),
        ({"shift": {"fraction": 0}}, "model.shift.fraction"),
        ({"shift": {"fold": 2}}, "model.shift.fold"),
        ({"in_channels": 0}, "model.in_channels"),
        ({"learn_sigma": True, "pretrained_path": "/nonexistent/sd"}, "diffusion.learn_sigma"),
        ({"head_width": 48}, "model.head_width"),  # 32 and 64 channels: not multiples of 48
        ({"head_width": 0}, "model.head_width"),
        ({"head_width": 32, "pretrained_path": "/nonexistent/sd"}, "model.head_width"),
    ],
)
def test_bad_values_name_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        LatentUNet(**{"temporal": "shift", **TINY, **kwargs})
    assert info.value.key == key
    if key == "diffusion.learn_sigma":
        assert "diffusion=sd" in str(info.value)
    if key == "model.size":  # a Latte size given to the U-Net: the message names the U-Net's sizes
        message = str(info.value)
        assert "'XL'" in message and "model.size=sd" in message and "model.size=tiny" in message


@pytest.mark.parametrize("name", ["latent_shift", "latent_vdm", "latent_2d"])
def test_a_latte_dataset_recipe_gives_the_unet_its_own_size(name: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model={name}", "data=ucf101"], run_dir=tmp_path)
    assert cfg.model.size == "sd"  # conf/recipe/ucf101.yaml is Latte's recipe: its XL is Latte's only


def test_a_latte_size_set_on_the_unet_fails_at_start_naming_model_size(tmp_path: Path) -> None:
    cfg = compose_config(["model=latent_shift", "data=ucf101", "model.size=XL"], run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"model\.size: unknown size 'XL'.*model\.size=sd"):
        instantiate_node(cfg.model)


def test_bad_inputs_raise_clearly() -> None:
    model = _model("shift")
    x, t = _inputs()
    with pytest.raises(ValueError, match="class conditioning"):
        model(x, t, Cond(labels=torch.tensor([0, 1])))
    with pytest.raises(ValueError, match="cross_attention_dim"):
        model(x, t, Cond(text=torch.randn(2, 3, WIDTH + 1)))
    with pytest.raises(ValueError, match=r"\(B, 4, F, H, W\)"):
        model(x[:, :3], t)


@pytest.mark.parametrize(
    ("name", "temporal"), [("latent_shift", "shift"), ("latent_vdm", "attention"), ("latent_2d", "none")]
)
def test_config_files_build_the_tiny_models(name: str, temporal: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model={name}", "data.num_frames=4"], run_dir=tmp_path)
    assert cfg.model.size == "tiny"  # the synthetic recipe's size
    model = instantiate(cfg.model)
    assert isinstance(model, LatentUNet) and model.temporal == temporal
    assert model.shift_fraction == pytest.approx(1 / 3) and model.cross_attention_dim == WIDTH
    assert model.in_channels == cfg.data.channels and model.learn_sigma == cfg.diffusion.learn_sigma
    x = torch.randn(1, model.in_channels, 4, cfg.model.input_size, cfg.model.input_size)
    with torch.no_grad():
        assert model(x, torch.tensor([5]), Cond()).shape == (1, model.out_channels, *x.shape[2:])
    cfg = compose_config([f"model={name}", "model.shift.fraction=0.125", "model.size=sd"], run_dir=tmp_path)
    assert cfg.model.shift.fraction == 0.125 and cfg.model.pretrained_path is None


@pytest.mark.skipif(
    importlib.util.find_spec("vidgen.models.stable_diffusion") is None,
    reason="vidgen.models.stable_diffusion (load_unet) is not there yet",
)
@pytest.mark.parametrize("temporal", ["shift", "attention"])
def test_pretrained_unet_loads_untouched(temporal: str, tmp_path: Path) -> None:
    plain = _plain()
    plain.save_pretrained(tmp_path / "unet")
    model = LatentUNet(temporal=temporal, **TINY, pretrained_path=str(tmp_path), pretrained_subfolder="unet")
    for key, value in plain.state_dict().items():
        assert torch.equal(model.unet.state_dict()[key], value)
    x, t = _inputs()
    if temporal == "attention":  # at init: the pretrained image model on every frame
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(x, t), _per_frame(plain, x, t), atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError) as info:
        LatentUNet(temporal=temporal, **{**TINY, "in_channels": 3}, pretrained_path=str(tmp_path))
    assert info.value.key == "model.in_channels"
    with pytest.raises(ConfigError) as info:
        LatentUNet(temporal=temporal, **TINY, cross_attention_dim=768, pretrained_path=str(tmp_path))
    assert info.value.key == "model.cross_attention_dim"
    with pytest.raises(ConfigError) as info:
        LatentUNet(temporal=temporal, **TINY, pretrained_path=str(tmp_path / "missing"))
    assert info.value.key == "model.pretrained_path" and "missing" in str(info.value)
