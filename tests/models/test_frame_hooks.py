"""The frame-hook plumbing shared by the temporal shift and the temporal attention (vidgen.nn.frame_hooks)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidgen.nn.frame_hooks import (
    FrameContext,
    HookHandles,
    batch_to_frames,
    check_frame_layout,
    frames_to_batch,
)


def test_frames_to_batch_is_clip_major_and_inverted_by_batch_to_frames() -> None:
    video = torch.randn(2, 3, 4, 5, 5)  # (B, C, F, H, W)
    stacked = frames_to_batch(video)
    assert stacked.shape == (8, 3, 5, 5)
    assert torch.equal(stacked[1 * 4 + 2], video[1, :, 2])  # row b*F + i is frame i of sample b
    assert torch.equal(batch_to_frames(stacked, 4), video)


def test_check_frame_layout_gives_the_clip_length_and_refuses_bad_layouts() -> None:
    assert check_frame_layout(12, 4) == 4
    assert check_frame_layout(12, 4, 3) == 3
    assert check_frame_layout(12, 4, 0) == 0  # images only
    with pytest.raises(ValueError, match="whole number of 5-frame samples"):
        check_frame_layout(12, 5)
    with pytest.raises(ValueError, match="whole number"):
        check_frame_layout(12, 0)
    with pytest.raises(ValueError, match=r"clip_frames must lie in \[0, 4\]"):
        check_frame_layout(12, 4, 5)


def test_frame_context_sets_and_restores() -> None:
    context = FrameContext()
    assert context.layout() == (1, None)  # outside a video call: one-frame videos
    with context.use(4, 2):
        assert context.layout() == (4, 2)
        with context.use(3):
            assert context.layout() == (3, None)
        assert context.layout() == (4, 2)
    assert context.num_frames is None


def test_frame_context_is_restored_when_the_call_fails() -> None:
    context = FrameContext()
    with pytest.raises(RuntimeError), context.use(4, 2):
        raise RuntimeError("the U-Net failed")
    assert context.layout() == (1, None)


def test_hook_handles_remove_every_hook_once() -> None:
    calls: list[int] = []
    layers = [nn.Identity(), nn.Identity()]
    handles = HookHandles(
        [layer.register_forward_hook(lambda *_: calls.append(1)) for layer in layers]  # type: ignore[misc]
    )
    assert len(handles) == 2
    for layer in layers:
        layer(torch.zeros(1))
    assert len(calls) == 2
    handles.remove()
    handles.remove()  # idempotent
    for layer in layers:
        layer(torch.zeros(1))
    assert len(handles) == 0 and len(calls) == 2
