"""The parameter-free temporal shift (vidgen.nn.temporal_shift): semantics, boundaries, hooks, and the shift
under activation checkpointing (vidgen.nn.frame_hooks.FrameCheckpoint)."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from vidgen.nn.frame_hooks import FrameCheckpoint, FrameContext
from vidgen.nn.temporal_shift import attach_temporal_shift, resnet_blocks, shift_fold, temporal_shift


def _coded(batch: int, frames: int, channels: int, size: int = 2) -> torch.Tensor:
    """``(B*F, C, size, size)`` with value ``1000*b + 100*frame + channel + 1`` everywhere (never 0)."""
    b = torch.arange(batch).view(batch, 1, 1)
    f = torch.arange(frames).view(1, frames, 1)
    c = torch.arange(channels).view(1, 1, channels)
    values = (1000 * b + 100 * f + c + 1).float().reshape(batch * frames, channels, 1, 1)
    return values.expand(-1, -1, size, size).contiguous()


def test_shift_semantics_on_coded_input() -> None:
    batch, frames, channels = 2, 4, 12
    x = _coded(batch, frames, channels)
    out = temporal_shift(x, frames, fraction=1 / 3)
    fold = 4
    assert shift_fold(channels, 1 / 3) == fold
    video = out.view(batch, frames, channels, 2, 2)
    for b in range(batch):
        for i in range(frames):
            for c in range(channels):
                value = video[b, i, c]
                if c < fold:  # from the previous frame; frame 0 gets zeros
                    expected = 0.0 if i == 0 else 1000 * b + 100 * (i - 1) + c + 1
                elif c >= channels - fold:  # from the next frame; the last frame gets zeros
                    expected = 0.0 if i == frames - 1 else 1000 * b + 100 * (i + 1) + c + 1
                else:  # unchanged
                    expected = 1000 * b + 100 * i + c + 1
                assert torch.all(value == expected), (b, i, c, value.flatten()[0].item(), expected)


def test_no_wrap_between_clips_of_a_batch() -> None:
    """Sample 1's first frame must not see sample 0's last frame (zero padding, no roll across the batch)."""
    x = _coded(2, 3, 6)
    video = temporal_shift(x, 3, fraction=1 / 3).view(2, 3, 6, 2, 2)
    assert torch.all(video[1, 0, :2] == 0) and torch.all(video[0, 2, 4:] == 0)
    assert torch.all(video[0, 0, 4:] == 0 + 100 + torch.tensor([4.0, 5.0]).view(2, 1, 1) + 1)


def test_fold_sizes_for_one_third_and_one_eighth() -> None:
    assert shift_fold(96, 1 / 3) == 32 and shift_fold(320, 1 / 3) == 106 and shift_fold(1280, 1 / 3) == 426
    assert shift_fold(96, 0.125) == 12 and shift_fold(320, 0.125) == 40
    assert shift_fold(3, 0.125) == 0  # too few channels: nothing moves
    x = _coded(1, 3, 16)
    out_eighth = temporal_shift(x, 3, fraction=0.125).view(3, 16, 2, 2)
    # frame 1: channels 0-1 from frame 0, 14-15 from frame 2, 2-13 its own
    assert torch.equal(out_eighth[1, :2], x.view(3, 16, 2, 2)[0, :2])
    assert torch.equal(out_eighth[1, 14:], x.view(3, 16, 2, 2)[2, 14:])
    assert torch.equal(out_eighth[1, 2:14], x.view(3, 16, 2, 2)[1, 2:14])
    for bad in (0.0, -0.1, 0.6, True, "1/3"):
        with pytest.raises(ValueError, match="fraction"):
            temporal_shift(x, 3, fraction=bad)  # type: ignore[arg-type]


def test_single_frame_zeroes_both_shifted_parts() -> None:
    x = _coded(3, 1, 9)
    out = temporal_shift(x, 1, fraction=1 / 3)
    assert torch.all(out[:, :3] == 0) and torch.all(out[:, 6:] == 0)
    assert torch.equal(out[:, 3:6], x[:, 3:6])


def test_out_of_place_parameter_free_and_gradient() -> None:
    frames, channels = 3, 6
    x = torch.randn(2 * frames, channels, 4, 4, requires_grad=True)
    before = x.detach().clone()
    out = temporal_shift(x, frames, fraction=1 / 3)
    assert torch.equal(x.detach(), before)  # input untouched
    assert out.data_ptr() != x.data_ptr()
    out.sum().backward()
    grad = x.grad.view(2, frames, channels, 4, 4)
    # a value is read exactly once unless it is truncated: first fold of the last frame (nobody reads it
    # forward) and last fold of frame 0 (nobody reads it backward) get zero gradient
    expected = torch.ones(2, frames, channels, 4, 4)
    expected[:, -1, :2] = 0
    expected[:, 0, 4:] = 0
    assert torch.equal(grad, expected)


def test_clip_frames_shift_only_within_the_clip() -> None:
    """Joint training: frames after the clip are images, each a one-frame video."""
    frames, clip, channels = 5, 3, 6
    x = _coded(1, frames, channels)
    out = temporal_shift(x, frames, fraction=1 / 3, clip_frames=clip).view(frames, channels, 2, 2)
    ref_clip = temporal_shift(x[:clip], clip, fraction=1 / 3).view(clip, channels, 2, 2)
    ref_images = temporal_shift(x[clip:], 1, fraction=1 / 3).view(frames - clip, channels, 2, 2)
    assert torch.equal(out[:clip], ref_clip)  # the last clip frame does not read the first image
    assert torch.equal(out[clip:], ref_images)
    with pytest.raises(ValueError, match="clip_frames"):
        temporal_shift(x, frames, clip_frames=6)
    with pytest.raises(ValueError, match="whole number"):
        temporal_shift(x, 4)


def _block(channels: int = 16, temb: int = 8) -> ResnetBlock2D:
    torch.manual_seed(0)
    return ResnetBlock2D(in_channels=channels, out_channels=channels, temb_channels=temb, groups=4).eval()


def _manual_block(block: ResnetBlock2D, x: torch.Tensor, temb: torch.Tensor, frames: int) -> torch.Tensor:
    """ResnetBlock2D's forward written out with the shift before conv1 and an unshifted shortcut."""
    h = block.nonlinearity(block.norm1(x))
    h = block.conv1.forward(temporal_shift(h, frames, fraction=1 / 3))  # .forward: bypasses any hook
    h = h + block.time_emb_proj(block.nonlinearity(temb))[:, :, None, None]
    h = block.conv2(block.dropout(block.nonlinearity(block.norm2(h))))
    return (x + h) / block.output_scale_factor


def test_hook_shifts_the_residual_branch_only_and_is_removable() -> None:
    block = _block()
    frames = 3
    x, temb = torch.randn(2 * frames, 16, 6, 6), torch.randn(2 * frames, 8)
    plain = block(x, temb)
    params_before = sum(p.numel() for p in block.parameters())
    keys_before = list(block.state_dict())
    context = FrameContext()
    handles = attach_temporal_shift(block, context, fraction=1 / 3)
    assert len(handles) == 1
    assert (
        sum(p.numel() for p in block.parameters()) == params_before
        and list(block.state_dict()) == keys_before
    )
    with torch.no_grad(), context.use(frames):
        hooked = block(x, temb)
        torch.testing.assert_close(hooked, _manual_block(block, x, temb, frames))
    assert not torch.allclose(hooked, plain)
    with torch.no_grad():  # no video call: each row is a one-frame video
        torch.testing.assert_close(block(x, temb), _manual_block(block, x, temb, 1))
    handles.remove()
    assert len(block.conv1._forward_pre_hooks) == 0
    with torch.no_grad(), context.use(frames):
        assert torch.equal(block(x, temb), plain)


def test_one_block_receptive_field_is_three_frames() -> None:
    block = _block()
    frames = 5
    context = FrameContext()
    attach_temporal_shift(block, context, fraction=1 / 3)
    x = torch.randn(frames, 16, 4, 4, requires_grad=True)
    with context.use(frames):
        block(x, torch.randn(frames, 8))[2].sum().backward()
    touched = [bool(x.grad[k].abs().sum() > 0) for k in range(frames)]
    assert touched == [False, True, True, True, False]


def test_attach_finds_every_resnet_block_and_refuses_none() -> None:
    net = nn.Sequential(_block(), nn.Conv2d(16, 16, 1), _block())
    assert len(resnet_blocks(net)) == 2
    assert len(attach_temporal_shift(net, FrameContext(), 0.125)) == 2
    with pytest.raises(ValueError, match="ResnetBlock2D"):
        attach_temporal_shift(nn.Conv2d(3, 3, 1), FrameContext(), 0.125)


def test_frame_checkpoint_recomputes_with_the_forward_layout() -> None:
    """Activation checkpointing recomputes in backward, after the context was reset: the layout is kept."""
    block = _block()
    context = FrameContext()
    attach_temporal_shift(block, context, fraction=1 / 3)
    x, temb = torch.randn(6, 16, 4, 4), torch.randn(6, 8)

    def grads(checkpointed: bool) -> torch.Tensor:
        xx = x.clone().requires_grad_(True)
        with context.use(3):
            out = FrameCheckpoint(context)(block, xx, temb) if checkpointed else block(xx, temb)
        with context.use(2):  # another layout is current when the backward pass recomputes
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return xx.grad

    torch.testing.assert_close(grads(True), grads(False))
