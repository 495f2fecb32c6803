"""Parameter-free temporal shift (TSM semantics) for frames stacked in the batch, and its U-Net hooks.

Latent-Shift (seeds 000, 001) runs a text-to-image U-Net on the frames of a video stacked in the batch,
``(B*F, C, H, W)`` with the frames of one clip consecutive (clip-major). Inside the residual branch of every
2D ResNet block the features are shifted along time before the first convolution (Temporal Shift Module,
"residual" placement): with ``fold = int(C * fraction)``,

* channels ``[0, fold)`` of frame ``i`` take frame ``i-1``'s values (frame 0 gets zeros),
* channels ``[C-fold, C)`` of frame ``i`` take frame ``i+1``'s values (the last frame gets zeros),
* channels ``[fold, C-fold)`` are unchanged.

Zero padding and truncation, never a roll: a frame at the clip's border sees zeros where its missing
neighbour would be, which tells the network that the context is missing. With one frame both shifted parts
are zero (Latent-Shift's text-to-image mode). Seed 000 splits the channels into three equal parts, so the
default fraction per direction is 1/3; TSM uses 1/8.

The shift is attached with :func:`attach_temporal_shift` as a ``forward_pre_hook`` on ``conv1`` of every
diffusers ``ResnetBlock2D`` (so it sees the residual branch after ``norm1`` + activation, and the shortcut
stays unshifted). Hooks add no parameters and no buffers: the U-Net's state-dict keys and parameter count
stay exactly those of the plain text-to-image U-Net. A hook learns the current frame layout from a shared
:class:`~vidgen.nn.frame_hooks.FrameContext` that the wrapping video model sets around every U-Net call (the
frame-hook plumbing, shared with the temporal attention: :mod:`vidgen.nn.frame_hooks`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vidgen.nn.frame_hooks import FrameContext, HookHandles, check_frame_layout

__all__ = [
    "TemporalShiftHook",
    "attach_temporal_shift",
    "check_shift_fraction",
    "resnet_blocks",
    "shift_fold",
    "temporal_shift",
]


def check_shift_fraction(fraction: float) -> float:
    """Return ``fraction`` as a float if it is a valid shift fraction per direction, ``0 < f <= 1/2``."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0.0 < fraction <= 0.5:
        raise ValueError(
            f"the shift fraction per direction must be a number in (0, 1/2], got {fraction!r} "
            "(1/3: seed 000's three equal parts, 1/8: TSM)"
        )
    return float(fraction)


def shift_fold(channels: int, fraction: float) -> int:
    """Channels shifted in each direction: ``int(channels * fraction)`` (``0 < fraction <= 1/2``)."""
    return int(channels * check_shift_fraction(fraction))


def temporal_shift(
    x: torch.Tensor, num_frames: int, fraction: float = 1.0 / 3.0, clip_frames: int | None = None
) -> torch.Tensor:
    """Shift channels along time, out of place (the input is never modified).

    Args:
        x: ``(B*T, C, H, W)``, the ``T`` frames of each sample consecutive (clip-major: row ``b*T + i`` is
            frame ``i`` of sample ``b``). Any trailing shape after ``C`` works.
        num_frames: ``T``, frames per sample; must divide the batch dimension.
        fraction: channels shifted per direction, ``fold = int(C * fraction)``, ``0 < fraction <= 1/2``.
        clip_frames: image-video joint training: the first ``clip_frames`` of the ``T`` frames are one
            video clip and are shifted among themselves; frames after them are independent images, each a
            one-frame video (both shifted parts zero). None = all ``T`` frames are the clip.

    Returns:
        ``(B*T, C, H, W)``: channels ``[0, fold)`` of frame ``i`` from frame ``i-1`` (zeros for ``i = 0``),
        channels ``[C-fold, C)`` from frame ``i+1`` (zeros for the last clip frame), the rest unchanged.
    """
    clip = check_frame_layout(x.shape[0], num_frames, clip_frames)
    channels = x.shape[1]
    fold = shift_fold(channels, fraction)
    video = x.reshape(x.shape[0] // num_frames, num_frames, *x.shape[1:])  # (B, T, C, ...) view
    out = torch.zeros_like(video)
    out[:, :, fold : channels - fold] = video[:, :, fold : channels - fold]
    if fold and clip > 1:
        out[:, 1:clip, :fold] = video[:, : clip - 1, :fold]  # from the previous frame
        out[:, : clip - 1, channels - fold :] = video[:, 1:clip, channels - fold :]  # from the next frame
    return out.reshape(x.shape)


class TemporalShiftHook:
    """``forward_pre_hook`` that shifts the first positional input of the hooked module along time.

    Reads the frame layout from its :class:`FrameContext` at every call. Holds no tensors.
    """

    def __init__(self, context: FrameContext, fraction: float) -> None:
        self.context = context
        self.fraction = check_shift_fraction(fraction)

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """``args[0]: (B*T, C, H, W)`` -> the same args with ``args[0]`` shifted."""
        num_frames, clip_frames = self.context.layout()
        return (temporal_shift(args[0], num_frames, self.fraction, clip_frames), *args[1:])


def resnet_blocks(unet: nn.Module) -> list[nn.Module]:
    """Every diffusers ``ResnetBlock2D`` inside ``unet``, in module (registration) order."""
    from diffusers.models.resnet import ResnetBlock2D

    return [module for module in unet.modules() if isinstance(module, ResnetBlock2D)]


def attach_temporal_shift(unet: nn.Module, context: FrameContext, fraction: float) -> HookHandles:
    """Shift the input of ``conv1`` of every ``ResnetBlock2D`` of ``unet`` (the residual branch after
    ``norm1`` and the activation; the shortcut is not shifted).

    Args:
        unet: a diffusers U-Net (or any module containing ``ResnetBlock2D`` blocks).
        context: the shared layout the wrapping model sets before each U-Net call.
        fraction: channels shifted per direction (``fold = int(C * fraction)`` of ``conv1``'s input).

    Returns:
        the handles; ``remove()`` restores the plain U-Net. Raises ValueError if ``unet`` has no block.
    """
    hook = TemporalShiftHook(context, fraction)
    blocks = resnet_blocks(unet)
    if not blocks:
        raise ValueError(
            f"{type(unet).__name__} has no diffusers ResnetBlock2D to attach the temporal shift to"
        )
    return HookHandles([block.conv1.register_forward_pre_hook(hook) for block in blocks])
