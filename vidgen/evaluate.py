"""``python -m vidgen.evaluate metrics=[fvd,fid,is,clipsim] ckpt_path=... | fake_dir=... [real_dir=...]``

Generates videos from a checkpoint (or reads a folder of .mp4 videos, or of .png images from text-to-image
sampling), reads real videos from a data config or a folder, runs the chosen metrics under their protocols,
prints a table and writes a JSON file. Every weight file the metrics need is checked before anything is
sampled; real feature statistics are cached on disk.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader
from tqdm import tqdm

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.io.samples import GRID_STEM
from vidgen.metrics.base import VideoMetric
from vidgen.metrics.evaluator import Batch, check_required_files, evaluate, frames_to_uint8_batch
from vidgen.metrics.stats_cache import StatsCache
from vidgen.metrics.weights import MissingWeightsError
from vidgen.sample import pick_device
from vidgen.train import CONFIG_DIR

CONDITIONS_FILE = "conditions.json"


def build_metrics(
    node: DictConfig, device: torch.device, num_real: int | None = None, num_fake: int | None = None
) -> dict[str, VideoMetric]:
    """Instantiate every metric of the ``metrics`` node (name -> config with ``_target_``).

    ``num_real`` / ``num_fake`` override the protocol counts of every metric that has them (quick checks);
    ``device: auto`` becomes ``device``.
    """
    if not node:
        raise ConfigError("metrics", "no metrics chosen; e.g. metrics=[fvd,fid] or metrics=synthetic")
    metrics = {}
    for name, metric_cfg in node.items():
        kwargs: dict[str, Any] = {}
        if "device" in metric_cfg and metric_cfg.device in (None, "auto"):
            kwargs["device"] = str(device)
        for key, value in (("num_real", num_real), ("num_fake", num_fake)):
            if value is not None and key in metric_cfg:
                kwargs[key] = int(value)
        metrics[str(name)] = instantiate_node(metric_cfg, **kwargs)
    return metrics


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


def read_sample(path: Path) -> torch.Tensor:
    """One generated sample as uint8 ``(F, H, W, 3)``: an .mp4's frames, or a .png image as ``F = 1``."""
    from vidgen.io.video import read_image, read_video

    return read_image(path).unsqueeze(0) if path.suffix == ".png" else read_video(path)


def fake_from_folder(folder: Path, batch_size: int) -> Iterator[Batch]:
    """Read the generated samples of :func:`sample_files` in name order (``"video"``: uint8
    ``(B, F, H, W, 3)``; images have ``F = 1``); labels / captions from ``conditions.json`` when present
    (``vidgen.sample`` writes it)."""
    files = sample_files(folder)
    conditions = {}
    if (folder / CONDITIONS_FILE).is_file():
        conditions = json.loads((folder / CONDITIONS_FILE).read_text())
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


def protocol_counts(metrics: dict[str, VideoMetric]) -> tuple[int, int]:
    """Clips to read: the most any metric's protocol wants, real (0 if none needs real) and generated."""
    real = max([m.num_real_wanted for m in metrics.values() if m.needs_real] or [0])
    return real, max(m.num_fake_wanted for m in metrics.values())


def evaluate_model(
    module: Any,
    datamodule: Any,
    data_cfg: dict[str, Any],
    metrics: dict[str, VideoMetric],
    cache_dir: str | Path,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a trained module against its datamodule's evaluation clips (used at the end of training)."""
    check_required_files(metrics)
    need_real, need_fake = protocol_counts(metrics)
    real = real_from_dataset(datamodule.evaluation_dataset(need_real), batch_size) if need_real else None
    captions = evaluation_captions(module, datamodule, need_fake)
    fake = fake_from_checkpoint(module, need_fake, batch_size, seed, None, None, captions)
    return evaluate(
        metrics,
        fake,
        real,
        cache=StatsCache(Path(cache_dir) / "real_stats"),
        dataset_key=_dataset_key(data_cfg, None),
    )


def _dataset_key(data_cfg: dict[str, Any] | None, real_dir: str | None) -> dict[str, Any]:
    """What identifies the real data in the statistics cache."""
    if real_dir:
        return {"real_dir": str(Path(real_dir).resolve())}
    # settings that do not change the real clips an evaluation reads (joint_image_frames only appends images
    # to training clips), so runs that differ in them share one cache entry
    ignored = {
        "batch_size",
        "num_workers",
        "val_batch_size",
        "pin_memory",
        "drop_last",
        "_target_",
        "joint_image_frames",
    }
    return {k: v for k, v in (data_cfg or {}).items() if k not in ignored}


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    if bool(cfg.ckpt_path) == bool(cfg.fake_dir):
        raise ConfigError(
            "ckpt_path", "give exactly one of ckpt_path (generate) or fake_dir (read .mp4 or .png files)"
        )
    device = pick_device(str(cfg.device))
    module, train_cfg = None, None
    if cfg.ckpt_path:
        from vidgen.lit.build import load_module_from_checkpoint

        module, train_cfg = load_module_from_checkpoint(cfg.ckpt_path)
        module.to(device)
        if cfg.get("data") is None:  # real data and metric shapes follow the checkpoint's data config
            with open_dict(cfg):
                cfg.data = train_cfg.data
    metrics = build_metrics(cfg.metrics, device, cfg.num_real, cfg.num_fake)
    files = check_required_files(metrics)  # before any sampling

    data_cfg = cfg.get("data")

    num_real_needed, num_fake_needed = protocol_counts(metrics)
    batch_size = int(cfg.batch_size)

    real_batches = None
    data_plain = OmegaConf.to_container(data_cfg, resolve=True) if data_cfg is not None else None
    if num_real_needed:
        if cfg.real_dir:
            from vidgen.data.video_folder import VideoFolderDataset

            reference = data_plain or {}
            dataset = VideoFolderDataset(
                root=cfg.real_dir,
                num_frames=int(reference.get("num_frames", 16)),
                frame_stride=int(reference.get("frame_stride", 1)),
                resolution=int(reference.get("resolution", 256)),
                random_offset=False,
            )
        elif data_cfg is not None:
            dataset = instantiate_node(data_cfg).evaluation_dataset(num_real_needed)
        else:
            raise ConfigError(
                "real_dir", "the metrics need real videos: give real_dir, data=..., or a ckpt_path"
            )
        real_batches = real_from_dataset(dataset, batch_size)

    if module is not None:
        sampler = OmegaConf.to_container(cfg.sampler, resolve=True) if cfg.get("sampler") else None
        captions = evaluation_captions(
            module, instantiate_node(data_cfg) if data_cfg is not None else None, num_fake_needed
        )
        fake_batches = fake_from_checkpoint(
            module, num_fake_needed, batch_size, int(cfg.seed), cfg.guidance_scale, sampler, captions
        )
    else:
        fake_batches = fake_from_folder(Path(cfg.fake_dir), batch_size)

    start = time.perf_counter()
    result = evaluate(
        metrics,
        fake_batches,
        real_batches,
        cache=StatsCache(Path(cfg.paths.cache_dir) / "real_stats"),
        dataset_key=_dataset_key(data_plain, cfg.real_dir),
    )
    result.update(
        {
            "seconds": time.perf_counter() - start,
            "source": {"ckpt_path": cfg.ckpt_path, "fake_dir": cfg.fake_dir, "real_dir": cfg.real_dir},
            "data": data_plain,
            "metric_configs": OmegaConf.to_container(cfg.metrics, resolve=True),
            "weights": {w.metric: str(w.resolve()) for w in files},
        }
    )
    return result


def format_table(values: dict[str, float]) -> str:
    width = max(len(k) for k in values) if values else 6
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v:.4f} |" for k, v in values.items()]
    return "\n".join(lines)


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        result = run_evaluation(cfg)
    except (ConfigError, MissingWeightsError) as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(result["metrics"]))
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str))
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
