"""Frames stacked in the batch, and the plumbing that lets hooks inside an image network see them as videos.

The U-Net video models (:mod:`vidgen.models.latent_unet`) run a text-to-image U-Net on the frames of a video
stacked in the batch, ``(B*F, C, H, W)``, clip-major: row ``b*F + i`` is frame ``i`` of sample ``b``
(:func:`frames_to_batch`, :func:`batch_to_frames`). Their temporal parts (the temporal shift,
:mod:`vidgen.nn.temporal_shift`; the temporal attention, :mod:`vidgen.nn.temporal_attention`) are hooks on
modules inside the U-Net, which receive only the stacked batch. This module holds what those hooks share:

* :class:`FrameContext`: the frame layout of the current U-Net call, set by the video model around each call
  and read by every hook (outside a video call each row is a one-frame video: text-to-image);
* :func:`check_frame_layout`: checks a layout against a batch and gives the clip length;
* :class:`HookHandles`: the handles of hooks attached together, removed together;
* :class:`FrameCheckpoint`: diffusers' activation-checkpointing function that restores the forward pass's
  layout for the recomputation in the backward pass.

Hooks are callable objects that hold their context (never closures), so ``copy.deepcopy`` of a model that owns
both the context and the U-Net (the EMA twin) gives the copy hooks that read the copy's context.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.hooks import RemovableHandle

__all__ = [
    "FrameCheckpoint",
    "FrameContext",
    "HookHandles",
    "batch_to_frames",
    "check_frame_layout",
    "frames_to_batch",
]


def frames_to_batch(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, F, H, W)`` -> ``(B*F, C, H, W)``, clip-major (row ``b*F + i`` is frame ``i`` of sample ``b``)."""
    return rearrange(x, "b c f h w -> (b f) c h w")


def batch_to_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(B*F, C, H, W)`` -> ``(B, C, F, H, W)``, the inverse of :func:`frames_to_batch`."""
    return rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)


def check_frame_layout(rows: int, num_frames: int, clip_frames: int | None = None) -> int:
    """Check a frame layout of a stacked batch and return the clip length.

    Args:
        rows: the batch dimension ``B*F`` of the stacked frames.
        num_frames: ``F``, consecutive rows per sample; must divide ``rows``.
        clip_frames: image-video joint training: the first ``clip_frames`` of the ``F`` frames are the clip,
            the rest independent images; None = all ``F`` frames are the clip.

    Returns:
        the clip length, ``clip_frames`` or ``num_frames`` when None. Raises ValueError on a bad layout.
    """
    if num_frames < 1 or rows % num_frames:
        raise ValueError(f"a batch of {rows} rows is not a whole number of {num_frames}-frame samples")
    clip = num_frames if clip_frames is None else clip_frames
    if not 0 <= clip <= num_frames:
        raise ValueError(f"clip_frames must lie in [0, {num_frames}], got {clip_frames}")
    return clip


@dataclass
class FrameContext:
    """The frame layout of the batch the U-Net is running on, shared by all temporal hooks of one model.

    Attributes:
        num_frames: ``F``, consecutive batch rows per sample; None = no video call in progress, and each
            row is then a one-frame video (a plain text-to-image call of the hooked U-Net).
        clip_frames: the first ``clip_frames`` of the ``F`` frames form the clip (image-video joint
            training); None = all of them.
    """

    num_frames: int | None = None
    clip_frames: int | None = None

    @contextlib.contextmanager
    def use(self, num_frames: int | None, clip_frames: int | None = None) -> Iterator[FrameContext]:
        """Set the layout for the duration of a ``with`` block, then restore the previous one."""
        previous = (self.num_frames, self.clip_frames)
        self.num_frames, self.clip_frames = num_frames, clip_frames
        try:
            yield self
        finally:
            self.num_frames, self.clip_frames = previous

    def layout(self) -> tuple[int, int | None]:
        """``(num_frames, clip_frames)`` with the text-to-image default ``(1, None)`` outside a video call."""
        return (1, None) if self.num_frames is None else (self.num_frames, self.clip_frames)


class HookHandles:
    """The handles of hooks attached together; :meth:`remove` detaches them all (idempotent)."""

    def __init__(self, handles: list[RemovableHandle] | None = None) -> None:
        self.handles: list[RemovableHandle] = list(handles or [])

    def __len__(self) -> int:
        return len(self.handles)

    def remove(self) -> None:
        """Detach every hook; the hooked modules behave as before the hooks were attached."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


class FrameCheckpoint:
    """diffusers' ``gradient_checkpointing_func`` that keeps the frame layout for the recomputation.

    Non-reentrant activation checkpointing recomputes a block's forward during the backward pass, when the
    wrapping model's :class:`FrameContext` may already hold another layout (or none). This function captures
    the layout at forward time and sets it again around the recomputation (``context_fn``), so temporal
    hooks inside checkpointed blocks see the same frames both times. Pass it to
    ``unet.enable_gradient_checkpointing(FrameCheckpoint(context))``.
    """

    def __init__(self, context: FrameContext) -> None:
        self.context = context

    def __call__(self, module: nn.Module, *args: Any) -> Any:
        """Run ``module(*args)`` under non-reentrant checkpointing, recomputing with this call's layout."""
        layout = (self.context.num_frames, self.context.clip_frames)

        def context_fn() -> tuple[contextlib.AbstractContextManager, contextlib.AbstractContextManager]:
            return contextlib.nullcontext(), self.context.use(*layout)

        return checkpoint(module.__call__, *args, use_reentrant=False, context_fn=context_fn)
