"""Image-video joint training (Latte, seed 002): every training clip gets ``K`` extra single frames.

Latte appends frames randomly selected from the same dataset, each sampled independently, after the frames
of the selected video; the temporal blocks see only the video's frames, the spatial blocks and the loss all
of them. :class:`JointImageFrames` wraps a training dataset so that each item's ``video`` is
``(C, F + K, H, W)``: the ``F`` clip frames, then ``K`` frames each taken from another clip of the same split
(never the clip itself; the source clip and the frame within it are drawn independently per image, with
replacement), and adds ``num_video_frames = F`` (collated to a ``(B,)`` LongTensor), ``image_sources``,
``(K, 2)`` int64 rows ``(source index, frame number)``, and each image's own condition, that of the clip it
was taken from (Latte's reference embeds every image's own label / caption): ``image_labels`` ``(K,)`` int64
when the items have a ``label``, ``image_captions`` (a list of ``K`` strings; the default collate makes it
``K`` sequences of ``B`` strings) when they have a ``caption``. The conditioners turn these into
``Cond.images``; the clip's own label / caption never conditions the images.

The draws come from ``(seed, epoch, index)`` only, so they are deterministic, differ between epochs and
survive a resume exactly like the rest of :class:`~vidgen.data.loader.ResumableDataLoader`'s data (it calls
:meth:`JointImageFrames.set_epoch`). Validation and evaluation data are never wrapped.

The wrapped dataset provides ``random_frame(index, rng) -> ((C, 1, H, W), frame number)`` and
``condition_of(index) -> {"label"?, "caption"?}`` (:class:`~vidgen.data.synthetic.SyntheticVideoDataset`,
:class:`~vidgen.data.video_folder.VideoFolderDataset` and :class:`~vidgen.data.webvid.WebVidDataset` do);
an unreadable source video is replaced by the next other clip (the dataset counts and reports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vidgen.config.errors import ConfigError
from vidgen.io.video import VideoReadError

__all__ = ["JointImageFrames"]

# random stream of the image draws (keeps them apart from the datasets' own (seed, epoch, index) streams)
_STREAM = 5


class JointImageFrames(Dataset):
    """Items of ``dataset`` with ``num_images`` single frames of other clips appended along the frame axis.

    Args:
        dataset: a map-style training dataset with ``random_frame(index, rng)`` (see the module docstring).
        num_images: ``K >= 1``, frames appended to every clip.
        seed: base seed of the draws.
    """

    def __init__(self, dataset: Any, num_images: int, seed: int = 0) -> None:
        super().__init__()
        if isinstance(num_images, bool) or not isinstance(num_images, int | np.integer) or num_images < 1:
            raise ConfigError("data.joint_image_frames", f"must be an integer >= 1, got {num_images!r}")
        for method in ("random_frame", "condition_of"):
            if not callable(getattr(dataset, method, None)):
                raise ConfigError(
                    "data.joint_image_frames",
                    f"{type(dataset).__name__} cannot give single frames with their condition ({method})",
                )
        if len(dataset) < 2:
            raise ConfigError(
                "data.joint_image_frames",
                f"needs at least 2 training clips (frames come from other clips), got {len(dataset)}",
            )
        self.dataset = dataset
        self.num_images = int(num_images)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the draws (and pass it on to the wrapped dataset)."""
        self.epoch = int(epoch)
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def _image(self, own: int, rng: np.random.Generator) -> tuple[torch.Tensor, int, int]:
        """One frame of a clip other than ``own``: ``(frame (C, 1, H, W), source index, frame number)``."""
        others = len(self.dataset) - 1
        first = int(rng.integers(others))  # uniform over the other clips
        for step in range(others):  # an unreadable source: the next other clip in order
            source = (first + step) % others
            source += source >= own
            try:
                frame, t = self.dataset.random_frame(source, rng)
            except (VideoReadError, OSError):
                continue  # counted and reported by the dataset
            return frame, source, int(t)
        raise RuntimeError(f"none of the other {others} clips of {type(self.dataset).__name__} is readable")

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        own = int(item.get("index", index))  # a video folder may have substituted an unreadable video
        rng = np.random.default_rng([self.seed, _STREAM, self.epoch, int(index)])
        images = [self._image(own, rng) for _ in range(self.num_images)]
        video = item["video"]
        item["video"] = torch.cat([video, *(frame.to(video.dtype) for frame, _, _ in images)], dim=1)
        item["num_video_frames"] = int(video.shape[1])
        item["image_sources"] = torch.tensor([[source, t] for _, source, t in images], dtype=torch.long)
        conditions = [self.dataset.condition_of(source) for _, source, _ in images]
        if "label" in item:
            item["image_labels"] = torch.tensor([int(c["label"]) for c in conditions], dtype=torch.long)
        if "caption" in item:
            item["image_captions"] = [str(c["caption"]) for c in conditions]
        return item
