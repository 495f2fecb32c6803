"""Data-side rows of ``python -m vidgen.bench``: what the training loader delivers, and what the training step
costs with a precomputed cache (``data.cache``) instead of encoding every clip.

* :func:`measure_loaders`: clips/s of the training loader of ``data`` read from its folders (or generated) with
  each worker count of ``bench.loader_workers``, and of the LitData cache when ``data.cache`` is set; the
  first batch (worker start-up) is not timed.
* :func:`measure_cached_training`: the training step on encoded and on cached batches of the same clips,
  timed round-robin (one step of each in turn), so the ratio holds even on a busy machine.
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator

__all__ = ["cached_batch", "loader_clips_per_s", "measure_cached_training", "measure_loaders"]


def loader_clips_per_s(loader: Any, batches: int) -> float:
    """Clips per second over ``batches`` batches of ``loader`` after its first one (start-up excluded);
    fewer when the loader ends first (at least one timed batch is needed)."""
    iterator = iter(loader)
    next(iterator)
    clips, start = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            break
        first = batch["video" if "video" in batch else "latent_mean"]
        clips += int(first.shape[0])
    elapsed = time.perf_counter() - start
    if clips == 0:
        raise ValueError("the loader gave one batch only: lower bench.loader_batches or add clips")
    return clips / elapsed


def measure_loaders(cfg: DictConfig, batches: int) -> dict[str, float]:
    """``{"folders, N workers": clips/s, ..., "cache, N workers": clips/s}`` for the worker counts of
    ``bench.loader_workers`` (null: 0 and ``data.num_workers``); the cache row only with ``data.cache``."""
    from vidgen.data.cached_datamodule import build_datamodule

    workers = cfg.bench.get("loader_workers")
    counts = sorted({0, int(cfg.data.num_workers)} if workers is None else {int(w) for w in workers})
    source = "generated" if str(cfg.data.name) == "synthetic" else "folders"
    rows: dict[str, float] = {}
    for count in counts:
        plain = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        with open_dict(plain):
            plain.data.num_workers = count
            cache = plain.data.get("cache")
            plain.data.cache = None
        rows[f"{source}, {count} workers"] = loader_clips_per_s(
            build_datamodule(plain).train_dataloader(), batches
        )
        if cache:
            with open_dict(plain):
                plain.data.cache = cache
            loader = build_datamodule(plain).train_dataloader()
            rows[f"cache, {count} workers"] = loader_clips_per_s(loader, batches)
    return rows


def cached_batch(module: VideoDiffusionModule, batch: dict[str, Any]) -> dict[str, Any]:
    """What a ``data.cache`` loader gives for the clips of ``batch``: their posterior (``latent_mean`` /
    ``latent_std`` ``(B, c, F, h, w)``) and, with text conditioning, their captions' states, no ``video``."""
    mean, std = module.autoencoder.posterior(batch["video"])
    cached = {k: v for k, v in batch.items() if k != "video"}
    cached["latent_mean"] = mean
    if std is not None:
        cached["latent_std"] = std
    encode = getattr(module.conditioner, "encode", None)
    if "caption" in batch and callable(encode):
        cached["text"], cached["text_mask"], cached["pooled_text"] = encode(list(batch["caption"]))
    return cached


def measure_cached_training(
    module: VideoDiffusionModule, batch: dict[str, Any], steps: int, warmup: int
) -> tuple[float, float]:
    """``(encoded, cached)`` clips/s of the training step (forward + backward + AdamW) on ``batch`` encoded in
    the step and on its :func:`cached_batch`, one step of each in turn (``warmup`` rounds untimed)."""
    optimizer = module.configure_optimizers()
    batches = {"encoded": batch, "cached": cached_batch(module, batch)}
    elapsed = dict.fromkeys(batches, 0.0)
    module.denoiser.train()
    for step in range(warmup + steps):
        for name, current in batches.items():
            start = time.perf_counter()
            losses = module._diffusion_losses(module.denoiser, current, step_generator(0, step), train=True)
            losses["loss"].mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if step >= warmup:
                elapsed[name] += time.perf_counter() - start
    size = int(batch["video"].shape[0])
    return steps * size / elapsed["encoded"], steps * size / elapsed["cached"]
