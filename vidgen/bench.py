"""``python -m vidgen.bench [train overrides]``: measure the composed training config.

Reports the denoiser's trainable parameter count, training throughput (clips/s over forward + backward +
AdamW step, after warmup), sampling time per video with the configured sampler, and peak memory (CUDA
allocator peak on GPU; process peak RSS on CPU). Prints a table and JSON and writes ``bench.json``.
"""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module, video_shape_from_config
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator
from vidgen.sample import pick_device
from vidgen.train import CONFIG_DIR


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fake_batch(module: VideoDiffusionModule, batch_size: int, seed: int) -> dict[str, Any]:
    """A batch of random videos in [-1, 1] (plus labels), shaped like the config's data."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand((batch_size, *module.video_shape), generator=generator) * 2 - 1
    batch: dict[str, Any] = {"video": video}
    if module.conditioner.num_classes:
        batch["label"] = torch.randint(0, module.conditioner.num_classes, (batch_size,), generator=generator)
    return batch


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision.startswith("bf16"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def measure_training(
    module: VideoDiffusionModule,
    batch_size: int,
    steps: int,
    warmup: int,
    device: torch.device,
    precision: str,
) -> float:
    """Clips per second over ``steps`` timed optimizer steps (forward + backward + AdamW)."""
    optimizer = module.configure_optimizers()
    batch = {k: v.to(device) for k, v in _fake_batch(module, batch_size, module.seed).items()}
    module.denoiser.train()
    elapsed = 0.0
    for step in range(warmup + steps):
        _synchronize(device)
        start = time.perf_counter()
        with _autocast(device, precision):
            losses = module._diffusion_losses(module.denoiser, batch, step_generator(0, step), train=True)
        losses["loss"].mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _synchronize(device)
        if step >= warmup:
            elapsed += time.perf_counter() - start
    return steps * batch_size / elapsed


def measure_sampling(module: VideoDiffusionModule, num_videos: int, device: torch.device) -> float:
    """Seconds per generated video (decoding included) with the module's sampler."""
    _synchronize(device)
    start = time.perf_counter()
    module.generate(num_videos, generator=torch.Generator().manual_seed(0))
    _synchronize(device)
    return (time.perf_counter() - start) / num_videos


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    settings = cfg.bench
    device = pick_device(str(settings.device))
    precision = str(settings.precision or cfg.trainer.precision)
    batch_size = int(settings.batch_size or cfg.data.batch_size)
    module = build_module(cfg).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    throughput = measure_training(
        module, batch_size, int(settings.train_steps), int(settings.warmup_steps), device, precision
    )
    train_peak = _peak_memory_mib(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds_per_video = measure_sampling(module, int(settings.sample_videos), device)
    sample_peak = _peak_memory_mib(device)
    c, f, h, w = video_shape_from_config(cfg)
    return {
        "model": str(cfg.model._target_).rsplit(".", 1)[-1],
        "model_size": str(cfg.model.get("size", "")),
        "params_trainable": module.num_denoiser_params(),
        "video_shape": [c, f, h, w],
        "latent_shape": list(module.latent_shape),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "precision": precision,
        "batch_size": batch_size,
        "train_clips_per_s": throughput,
        "sampler": f"{cfg.sampler.name} {cfg.sampler.steps} steps",
        "sample_s_per_video": seconds_per_video,
        "peak_memory_train_mib": train_peak,
        "peak_memory_sample_mib": sample_peak,
        "peak_memory_kind": "CUDA allocator peak" if device.type == "cuda" else "process peak RSS",
    }


def format_table(result: dict[str, Any]) -> str:
    rows = [
        ("model", f"{result['model']} {result['model_size']}"),
        ("trainable params", f"{result['params_trainable']:,} ({result['params_trainable'] / 1e6:.2f}M)"),
        ("video / latent shape", f"{tuple(result['video_shape'])} / {tuple(result['latent_shape'])}"),
        ("device", f"{result['device']} ({result['threads']} threads), {result['precision']}"),
        ("training throughput", f"{result['train_clips_per_s']:.2f} clips/s (batch {result['batch_size']})"),
        ("sampling time", f"{result['sample_s_per_video']:.2f} s/video ({result['sampler']})"),
        (
            "peak memory, training",
            f"{result['peak_memory_train_mib']:.0f} MiB ({result['peak_memory_kind']})",
        ),
        ("peak memory, sampling", f"{result['peak_memory_sample_mib']:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


@hydra.main(config_path=CONFIG_DIR, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        result = run_bench(cfg)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(result))
    print(json.dumps(result, indent=2))
    out = Path(cfg.paths.run_dir) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
