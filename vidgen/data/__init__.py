"""Datasets, resumable loaders and Lightning data modules.

Items are dicts ``{"video": (C, F, H, W) float32 in [-1, 1], "label": int (class datasets), "caption": str
(captioned datasets), "index": int}``; the default collate turns them into batch dicts with ``video`` of shape
``(B, C, F, H, W)`` and captions as ``list[str]``.
"""

from vidgen.data.datamodule import SyntheticDataModule, VideoFolderDataModule
from vidgen.data.loader import ResumableDataLoader, ResumableSampler
from vidgen.data.synthetic import MOTIONS, PALETTE, SHAPES, ClipSpec, ObjectSpec, SyntheticVideoDataset
from vidgen.data.video_folder import VIDEO_EXTENSIONS, VideoFolderDataset, list_videos

__all__ = [
    "MOTIONS",
    "PALETTE",
    "SHAPES",
    "VIDEO_EXTENSIONS",
    "ClipSpec",
    "ObjectSpec",
    "ResumableDataLoader",
    "ResumableSampler",
    "SyntheticDataModule",
    "SyntheticVideoDataset",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "list_videos",
]
