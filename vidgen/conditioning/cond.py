"""The small typed container a denoiser receives as its condition."""

from __future__ import annotations

from collections.abc import Callable
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
        content_frame: ``(B, C, h, w)`` an image given to the model as in-context tokens (CMD's motion model
            sees the content frame of the video it denoises the motion of). Not dropped for classifier-free
            guidance: the null condition of such a model carries the same content frame.
        num_video_frames: image-video joint training: the first ``F`` frames of ``x`` are one video clip,
            frames ``F..`` are independent images (the same ``F`` for the whole batch). None = every frame
            belongs to the clip. Not a tensor: :meth:`to`, :meth:`cat`, :meth:`repeat` and :meth:`select`
            keep it unchanged.
        images: image-video joint training: the own condition of each of the ``K`` images appended after
            the clip, a :class:`Cond` whose tensors have a second axis of ``K`` (``labels (B, K)``,
            ``text (B, K, L, D)``, ...), with each image's own condition dropout already applied. The fields
            set are those set on the clip's condition. None when there are no images (or nothing
            conditions). :meth:`per_frame` gives every frame its condition.
    """

    labels: torch.Tensor | None = None
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    pooled_text: torch.Tensor | None = None
    content_frame: torch.Tensor | None = None
    num_video_frames: int | None = None
    images: Cond | None = None

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields that are set (never ``num_video_frames`` or ``images``)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if isinstance(v, torch.Tensor)}

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Cond:
        """Apply ``fn`` to every tensor, the images' included (each along its batch axis 0)."""
        images = None if self.images is None else self.images._map(fn)
        return replace(self, images=images, **{k: fn(v) for k, v in self._tensors().items()})

    def to(self, device: torch.device | str) -> Cond:
        """Return a copy with every tensor moved to ``device``."""
        return self._map(lambda v: v.to(device))

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
        if (self.images is None) != (other.images is None):
            raise ValueError("cannot concatenate a condition with image conditions and one without")
        images = None if self.images is None else self.images.cat(other.images)
        return replace(self, images=images, **{k: torch.cat([mine[k], theirs[k]], dim=0) for k in mine})

    def repeat(self, n: int) -> Cond:
        """Repeat every tensor ``n`` times along the batch dimension (``[a, b] -> [a, b, a, b]``)."""
        return self._map(lambda v: v.repeat(n, *([1] * (v.dim() - 1))))

    def select(self, index: torch.Tensor | slice) -> Cond:
        """Index every tensor along the batch dimension."""
        return self._map(lambda v: v[index])

    @property
    def is_empty(self) -> bool:
        """True when no tensor field is set (``num_video_frames`` alone does not condition on anything)."""
        return not self._tensors() and (self.images is None or self.images.is_empty)

    def per_frame(self, num_frames: int) -> Cond:
        """The condition of every frame of a batch ``x: (B, C, num_frames, H, W)``, as a batch of frames.

        The clip's frames (the first ``num_video_frames``, all of them when that is None) carry the sample's
        condition; the ``K = num_frames - num_video_frames`` images appended for image-video joint training
        carry their own (:attr:`images`), never the clip's.

        Returns:
            a :class:`Cond` whose tensors have batch ``B * num_frames``, sample-major (frame ``f`` of sample
            ``b`` at ``b * num_frames + f``: the order of ``rearrange(x, "b c f h w -> (b f) c h w")``), with
            ``num_video_frames`` and ``images`` unset.

        Raises:
            ValueError: images that would need a condition have none (the clip's condition is set but
                :attr:`images` is None or lacks a field), or their shapes do not fit.
        """
        clip = num_frames if self.num_video_frames is None else int(self.num_video_frames)
        if not 0 <= clip <= num_frames:
            raise ValueError(f"num_video_frames {clip} does not fit a batch of {num_frames} frames")
        num_images = num_frames - clip
        out = {}
        for name, value in self._tensors().items():
            batch, rest = value.shape[0], tuple(value.shape[1:])
            per = value[:, None].expand(batch, clip, *rest)
            if num_images:
                own = None if self.images is None else getattr(self.images, name)
                if own is None:
                    raise ValueError(
                        f"the {num_images} images appended to each clip need their own {name} "
                        f"(cond.images.{name}); the clip's never conditions them"
                    )
                if tuple(own.shape) != (batch, num_images, *rest):
                    raise ValueError(
                        f"cond.images.{name} must have shape {(batch, num_images, *rest)}, got {tuple(own.shape)}"
                    )
                per = torch.cat([per, own.to(value.dtype)], dim=1)
            out[name] = per.flatten(0, 1)
        return Cond(**out)

    def checked_text(
        self, batch: int, width: int, width_key: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(text (B, L, width), text_mask (B, L) | None)``, checked against a model's batch and text width.

        Raises:
            ValueError: no text, or a shape that does not fit (``width_key`` names the model's setting).
        """
        text, mask = self.text, self.text_mask
        if text is None:
            raise ValueError(f"cond.text is missing (a text model, {width_key}={width})")
        if text.dim() != 3 or text.shape[0] != batch or text.shape[2] != width:
            raise ValueError(
                f"cond.text must have shape ({batch}, L, {width}) ({width_key}), got {tuple(text.shape)}"
            )
        if mask is not None and tuple(mask.shape) != tuple(text.shape[:2]):
            raise ValueError(
                f"cond.text_mask must have shape {tuple(text.shape[:2])}, got {tuple(mask.shape)}"
            )
        return text, mask

    def has_own_frame_conditions(self, num_frames: int) -> bool:
        """Whether frames of a ``num_frames``-frame batch differ in condition: images are appended and
        something conditions (so a model must use :meth:`per_frame` instead of one condition per sample)."""
        clip = num_frames if self.num_video_frames is None else int(self.num_video_frames)
        return clip < num_frames and bool(self._tensors())
