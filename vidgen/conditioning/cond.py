"""The small typed container a denoiser receives as its condition."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Cond:
    """Condition for one batch; every field is optional.

    Attributes:
        labels: ``(B,)`` int64 class indices. The null class (for classifier-free guidance) is the index
            ``num_classes``, so a denoiser's label table has ``num_classes + 1`` rows.
        text: ``(B, L, D)`` per-token text-encoder states.
        text_mask: ``(B, L)`` bool, True where a token is real (not padding).
        pooled_text: ``(B, D)`` pooled text embedding.
        num_video_frames: image-video joint training: the first ``F`` frames of ``x`` are one video clip,
            frames ``F..`` are independent images (the same ``F`` for the whole batch). None = every frame
            belongs to the clip. Not a tensor: :meth:`to`, :meth:`cat`, :meth:`repeat` and :meth:`select`
            keep it unchanged.
    """

    labels: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    pooled_text: torch.Tensor | None = None
    num_video_frames: int | None = None

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that are set (never the non-tensor ``num_video_frames``)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}

    def to(self, device: torch.device | str) -> Cond:
        """Return a copy with every tensor moved to ``device``."""
        return replace(self, **{k: v.to(device) for k, v in self._tensors().items()})

    def cat(self, other: Cond) -> Cond:
        """Concatenate two conditions along the batch dimension (used to batch cond + null for CFG)."""
        mine, theirs = self._tensors(), other._tensors()
        if mine.keys() != theirs.keys():
            raise ValueError(f"cannot concatenate conditions with fields {sorted(mine)} and {sorted(theirs)}")
        if self.num_video_frames != other.num_video_frames:
            raise ValueError(
                f"cannot concatenate conditions with num_video_frames {self.num_video_frames} and "
                f"{other.num_video_frames}: one batch has one clip length"
            )
        return replace(self, **{k: torch.cat([mine[k], theirs[k]], dim=0) for k in mine})

    def repeat(self, n: int) -> Cond:
        """Repeat every tensor ``n`` times along the batch dimension (``[a, b] -> [a, b, a, b]``)."""
        return replace(self, **{k: v.repeat(n, *([1] * (v.dim() - 1))) for k, v in self._tensors().items()})

    def select(self, index: torch.Tensor | slice) -> Cond:
        """Index every tensor along the batch dimension."""
        return replace(self, **{k: v[index] for k, v in self._tensors().items()})

    @property
    def is_empty(self) -> bool:
        """True when no tensor field is set (``num_video_frames`` alone does not condition on anything)."""
        return not self._tensors()
