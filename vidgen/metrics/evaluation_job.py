"""One evaluation, as ``python -m vidgen.evaluate`` runs it: generated clips from a checkpoint (sampled in
batches) or a folder of samples, real clips from a data config or a folder, the chosen metrics under their
protocols, with every weight file checked before anything is sampled and the real statistics cached."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.metrics.clip_sources import (
    check_fake_folder,
    evaluation_captions,
    fake_from_checkpoint,
    fake_from_folder,
    folder_dataset,
    real_clip_shape,
    real_from_dataset,
)
from vidgen.metrics.evaluation import build_metrics, dataset_key, protocol_counts
from vidgen.metrics.evaluator import check_required_files, evaluate
from vidgen.metrics.stats_cache import StatsCache
from vidgen.runtime import pick_device


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate a checkpoint (generating) or a folder of samples against real clips; returns the result
    written to ``metrics.json`` (values, clip counts, cache hits, sources, data and metric configs, weights)."""
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
    if cfg.fake_dir:  # the samples' shapes, from their headers, before the real statistics are computed
        compare = num_real_needed and (cfg.real_dir or data_plain is not None)
        check_fake_folder(Path(cfg.fake_dir), real_clip_shape(data_plain) if compare else None)
    if num_real_needed:
        if cfg.real_dir:
            dataset = folder_dataset(cfg.real_dir, data_plain)
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
        dataset_key=dataset_key(data_plain, cfg.real_dir),
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
