"""Where evaluation clips come from: a trained model, a folder of generated samples, or a dataset.

Each source is an iterator of the evaluator's batches ``{"video": uint8 (N, F, H, W, 3), "label"?: (N,),
"caption"?: list[str]}`` (:data:`vidgen.metrics.evaluator.Batch`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidgen.config.checks import checked_frame_size, checked_int
from vidgen.config.errors import ConfigError
from vidgen.io.conditions import read_conditions
from vidgen.io.samples import GRID_STEM
from vidgen.metrics.evaluator import Batch, frames_to_uint8_batch

__all__ = [
    "REAL_DIR_FRAMES",
    "REAL_DIR_RESOLUTION",
    "check_fake_folder",
    "evaluation_captions",
    "fake_from_checkpoint",
    "fake_from_folder",
    "fake_from_reconstructions",
    "folder_dataset",
    "read_sample",
    "real_clip_shape",
    "real_from_dataset",
    "sample_files",
    "sample_shape",
]

#: the real clips of a ``real_dir`` given without a data config: 16 frames (from frame 0) at 256 x 256
REAL_DIR_FRAMES = 16
REAL_DIR_RESOLUTION = 256


def fake_from_checkpoint(
    module: Any,
    num: int,
    batch_size: int,
    seed: int,
    guidance_scale: float | None,
    sampler: dict | None,
    captions: list[str] | None = None,
) -> Iterator[Batch]:
    """Generate ``num`` clips in batches; class-conditional models get the classes in turn, text-conditional
    ones the given ``captions`` (``num`` of them, e.g. the evaluation split's), which the batches carry on
    to the metrics (CLIPSIM)."""
    generator = torch.Generator().manual_seed(seed)
    num_classes = module.conditioner.num_classes
    is_text = bool(getattr(module.conditioner, "text_dim", 0))
    if is_text and (captions is None or len(captions) < num):
        raise ValueError(f"a text-conditional model needs {num} captions to generate evaluation clips")
    with tqdm(total=num, desc="generating", unit="clip") as bar:
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            labels = torch.arange(start, start + n) % num_classes if num_classes else None
            chunk = list(captions[start : start + n]) if is_text and captions else None
            videos = module.generate(
                n,
                generator=generator,
                labels=labels,
                captions=chunk,
                guidance_scale=guidance_scale,
                sampler=sampler,
            )
            bar.update(n)
            batch: Batch = {"video": frames_to_uint8_batch(videos), "label": labels}
            if chunk is not None:
                batch["caption"] = chunk
            yield batch


def evaluation_captions(module: Any, datamodule: Any, num: int) -> list[str] | None:
    """Captions to generate evaluation clips from: the data's (deterministic), for text models only."""
    if not getattr(module.conditioner, "text_dim", 0):
        return None
    if datamodule is None or not getattr(datamodule, "has_captions", False):
        raise ConfigError("data", "a text-conditional model is evaluated on captions: use data with captions")
    return list(datamodule.sample_captions(num))


def sample_files(folder: Path) -> list[Path]:
    """The generated samples in ``folder`` in name order: its ``*.mp4`` videos, or its ``*.png`` images (one-frame
    samples, as ``vidgen.sample data.num_frames=1`` writes them); the grid is not a sample. A folder with
    neither, or with both, is a :class:`ConfigError` on ``fake_dir``."""
    found = {
        suffix: sorted(p for p in folder.glob(f"*{suffix}") if p.stem != GRID_STEM)
        for suffix in (".mp4", ".png")
    }
    kinds = [suffix for suffix, files in found.items() if files]
    if not kinds:
        raise ConfigError("fake_dir", f"no .mp4 videos or .png images in '{folder}'")
    if len(kinds) > 1:
        raise ConfigError(
            "fake_dir",
            f"'{folder}' holds both .mp4 videos ({len(found['.mp4'])}) and .png images ({len(found['.png'])}): "
            "give a folder of one kind",
        )
    return found[kinds[0]]


def sample_shape(path: Path) -> tuple[int, int, int]:
    """``(frames, height, width)`` of one generated sample, from its header (a .png is one frame)."""
    from vidgen.io.video import image_size, video_shape

    return (1, *image_size(path)) if path.suffix == ".png" else video_shape(path)


def _shape_text(shape: tuple[int, int, int]) -> str:
    return "x".join(str(n) for n in shape)


def check_fake_folder(folder: Path, real_shape: tuple[int, int, int] | None) -> int:
    """Check the samples of ``folder`` from their headers before any metric work; returns their number.

    Every sample must have one ``(frames, height, width)``, and it must be ``real_shape``, the real clips'
    (``None``: no real clips to compare with): height and width always, frames for videos (one-frame images
    score against real frames). Otherwise a :class:`ConfigError` on ``fake_dir`` names the file and both
    shapes, before the real statistics (minutes to hours) are computed.
    """
    files = sample_files(folder)
    first, shape = files[0], sample_shape(files[0])
    for path in files[1:]:
        other = sample_shape(path)
        if other != shape:
            raise ConfigError(
                "fake_dir",
                f"'{path}' is {_shape_text(other)} but '{first.name}' is {_shape_text(shape)} (frames x height "
                "x width): every sample of a folder must have one shape",
            )
    if real_shape is not None:
        frames, height, width = shape
        if (height, width) != real_shape[1:] or (frames > 1 and frames != real_shape[0]):
            upscaled = height > real_shape[1] and height % real_shape[1] == 0 and width % real_shape[2] == 0
            hint = (
                "; vidgen.sample upscales its files for viewing unless upscale=1" if upscaled else
                "; set data.num_frames / data.resolution to the samples' shape if they are right"
            )  # fmt: skip
            raise ConfigError(
                "fake_dir",
                f"the samples in '{folder}' are {_shape_text(shape)} (frames x height x width) but the real "
                f"clips are {_shape_text(real_shape)} (data.num_frames x data.resolution){hint}",
            )
    return len(files)


def read_sample(path: Path) -> torch.Tensor:
    """One generated sample as uint8 ``(F, H, W, 3)``: an .mp4's frames, or a .png image as ``F = 1``."""
    from vidgen.io.video import read_image, read_video

    return read_image(path).unsqueeze(0) if path.suffix == ".png" else read_video(path)


def fake_from_folder(folder: Path, batch_size: int) -> Iterator[Batch]:
    """Read the generated samples of :func:`sample_files` in name order (``"video"``: uint8
    ``(B, F, H, W, 3)``; images have ``F = 1``); labels / captions from ``conditions.json`` when present
    (``vidgen.sample`` writes it)."""
    files = sample_files(folder)
    conditions = read_conditions(folder)
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        batch: Batch = {"video": torch.stack([torch.as_tensor(read_sample(p)) for p in chunk])}
        if "labels" in conditions:
            batch["label"] = torch.tensor([conditions["labels"][p.name] for p in chunk])
        if "captions" in conditions:
            batch["caption"] = [conditions["captions"][p.name] for p in chunk]
        yield batch


def real_from_dataset(dataset: Any, batch_size: int) -> Iterator[Batch]:
    """Real clips of a dataset (float [-1, 1]) converted to the metrics' uint8 format."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for batch in tqdm(loader, desc="real clips", unit="batch"):
        out: Batch = {"video": frames_to_uint8_batch(batch["video"])}
        if "label" in batch:
            out["label"] = batch["label"]
        if "caption" in batch:
            out["caption"] = list(batch["caption"])
        yield out


def fake_from_reconstructions(module: Any, dataset: Any, batch_size: int) -> Iterator[Batch]:
    """The reconstructions of a dataset's clips by an autoencoder module (``module.reconstruct(video,
    generator)``): the "generated" side of a reconstruction FVD, with the clips' labels / captions carried
    over. A frame VAE that samples its posterior draws batch ``i``'s from ``step_generator(module.seed, i)``
    (stream 2), so the score repeats."""
    from vidgen.lit.seeding import step_generator

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    seed = int(getattr(module, "seed", 0))
    for index, batch in enumerate(tqdm(loader, desc="reconstructing", unit="batch")):
        videos = module.reconstruct(batch["video"], generator=step_generator(seed, index, 0, 2))
        out: Batch = {"video": frames_to_uint8_batch(videos.cpu())}
        if "label" in batch:
            out["label"] = batch["label"]
        if "caption" in batch:
            out["caption"] = list(batch["caption"])
        yield out


def folder_dataset(root: str | Path, data_cfg: dict[str, Any] | None) -> Any:
    """The real clips of a folder of videos (``real_dir``) for evaluation, shaped like the data config's
    clips (``num_frames``, ``frame_stride``, ``resolution``; 16 / 1 / 256 without one), from frame 0."""
    from vidgen.data.video_folder import VideoFolderDataset

    reference = data_cfg or {}
    return VideoFolderDataset(
        root=root,
        num_frames=int(reference.get("num_frames", REAL_DIR_FRAMES)),
        frame_stride=int(reference.get("frame_stride", 1)),
        resolution=reference.get("resolution", REAL_DIR_RESOLUTION),
        random_offset=False,
    )


def real_clip_shape(data_cfg: dict[str, Any] | None) -> tuple[int, int, int]:
    """``(frames, height, width)`` of the real clips an evaluation reads with this data config (a real_dir
    without one: :data:`REAL_DIR_FRAMES` at :data:`REAL_DIR_RESOLUTION`)."""
    reference = data_cfg or {}
    frames = checked_int("data.num_frames", reference.get("num_frames", REAL_DIR_FRAMES))
    return frames, *checked_frame_size("data.resolution", reference.get("resolution", REAL_DIR_RESOLUTION))
