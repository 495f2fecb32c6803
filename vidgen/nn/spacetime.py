"""Space-time token grids: attention over the spatial or the temporal axis of ``(B, X, Y, D)`` tokens.

A video transformer keeps its tokens as a 4D tensor with one frame axis and one spatial axis (``S`` tokens
per frame: the ``h*w`` patches, plus any condition tokens). Which of the two middle axes is time is a
property of the current arrangement, ``(B, F, S, D)`` (``time_axis=1``) or ``(B, S, F, D)``
(``time_axis=2``): a model may keep whichever arrangement needs fewer copies. :class:`TokenGrid` records it,
together with everything temporal attention needs (RoPE tables, the number of clip frames for
image-video joint training) and the text context of cross-attention, so every layer that attends asks the
grid, and no layer needs to know the model's block schedule.

- Spatial attention: one sequence per (sample, frame), over the ``S`` tokens of that frame.
- Temporal attention: one sequence per (sample, spatial token), over the frames; with ``clip_frames = F``
  only frames ``0 .. F-1`` take part and the output for the other frames (independent images appended for
  image-video joint training) is zero, so they are mixed with nothing over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F

from vidgen.nn.rope import apply_rope

#: on a CPU, sequences up to this length attend through explicit products (``softmax(q k^T / sqrt(d)) v``):
#: for Latte's temporal attention over 8 or 16 frames the fused flash kernel's per-sequence overhead makes
#: it 1.1-1.6x slower than the two batched products (``python -m vidgen.bench``; GPUs always use SDPA)
SHORT_SEQUENCE_ON_CPU = 16


def attend_sequences(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention of ``(N, H, L, d)`` sequences (no mask): SDPA, or on a CPU for
    ``L <= SHORT_SEQUENCE_ON_CPU`` the same formula as two batched products (equal up to rounding)."""
    length = q.shape[-2]
    if q.device.type != "cpu" or length > SHORT_SEQUENCE_ON_CPU:
        return F.scaled_dot_product_attention(q, k, v)
    scores = torch.matmul(q, k.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5)
    return torch.matmul(scores.softmax(dim=-1), v)


class Axis(Enum):
    """The axis an attention head group runs along."""

    SPACE = "space"
    TIME = "time"


@dataclass(frozen=True)
class TokenGrid:
    """How a ``(B, X, Y, D)`` token tensor maps to space and time, and what attention along each needs.

    Attributes:
        time_axis: 1 when tokens are ``(B, F, S, D)``, 2 when ``(B, S, F, D)``.
        clip_frames: ``F``: only frames ``[0, F)`` take part in temporal attention (image-video joint
            training); None = every frame.
        rope: ``(cos, sin)`` RoPE tables, each ``(clip frames, head_dim)``, applied to queries and keys of
            temporal attention; None = no RoPE.
        context: ``(B, L, C)`` text states for cross-attention (one caption per sample), ``(B, F, L, C)``
            (one caption per frame: image-video joint training, where appended images have their own), or
            None.
        context_mask: ``(B, L)`` (``(B, F, L)`` with per-frame context) bool, True = real token, or None
            (all real).
    """

    time_axis: int = 1
    clip_frames: int | None = None
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    context: torch.Tensor | None = None
    context_mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.time_axis not in (1, 2):
            raise ValueError(f"time_axis must be 1 or 2, got {self.time_axis}")

    def dim(self, axis: Axis) -> int:
        """Index of ``axis`` in the ``(B, X, Y, ...)`` token tensor."""
        return self.time_axis if axis is Axis.TIME else 3 - self.time_axis

    def num_clip_frames(self, tokens: torch.Tensor) -> int:
        """Frames taking part in temporal attention for ``tokens: (B, X, Y, ...)``."""
        total = tokens.shape[self.time_axis]
        return total if self.clip_frames is None else min(self.clip_frames, total)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axis: Axis) -> torch.Tensor:
        """Scaled dot-product attention along ``axis``, every other token axis a separate sequence.

        Args:
            q, k, v: ``(B, X, Y, H, d)`` per-head queries, keys and values.
            axis: SPACE (within each frame) or TIME (within each spatial token, over the clip frames,
                with RoPE on ``q``/``k`` when the grid has tables).

        Returns:
            ``(B, X, Y, H, d)``; zero at frames outside the clip for temporal attention.
        """
        dim = self.dim(axis)
        length = q.shape[dim]
        keep, rope = length, None
        if axis is Axis.TIME:
            keep, rope = self.num_clip_frames(q), self.rope
            if keep == 0:  # no clip: every frame is an independent image
                return torch.zeros_like(q)
            if keep < length:
                q, k, v = (x.narrow(dim, 0, keep) for x in (q, k, v))
        # (B, X, Y, H, d) -> (B, other, H, L, d) -> (B*other, H, L, d): each sequence separately.
        shape = q.movedim(dim, 3).shape
        q, k, v = (x.movedim(dim, 3).reshape(-1, *shape[2:]) for x in (q, k, v))
        if rope is not None:
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = attend_sequences(q, k, v).reshape(shape).movedim(3, dim)
        if keep < length:  # frames outside the clip: nothing over time
            pad = list(out.shape)
            pad[dim] = length - keep
            out = torch.cat([out, out.new_zeros(pad)], dim=dim)
        return out
