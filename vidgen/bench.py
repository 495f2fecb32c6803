"""``python -m vidgen.bench [train overrides]``: measure the composed training config.

Reports the denoiser's trainable parameter count, training throughput (clips/s over forward + backward +
AdamW step, after warmup), sampling time per video with the configured sampler and guidance, and peak memory
(CUDA allocator peak on GPU; process peak RSS on CPU). Prints a table and JSON and writes ``bench.json``.

``bench.compare=[latent_shift,latent_vdm]`` measures several model configs side by side in one run: each
listed ``conf/model/<name>.yaml`` is composed with the command's other overrides (so the same data, video
shape, autoencoder, conditioner, recipe, sampler and U-Net ``model.size``), measured as above, and one table
with a column per model and a ratio column (first / second) is printed; ``bench.json`` holds every result.
Text-conditional models get captions in the timed training batch and at sampling.
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module, video_shape_from_config
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator
from vidgen.runtime import CONFIG_DIR, pick_device


def _peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _captions(count: int) -> list[str]:
    """``count`` distinct captions for text-conditional models (the synthetic data's kind of caption)."""
    shapes = ("square", "circle", "triangle")
    motions = ("moving left", "moving up", "bouncing")
    return [f"a {shapes[i % 3]} {motions[(i // 3) % 3]}, number {i}" for i in range(count)]


def _is_text_conditional(module: VideoDiffusionModule) -> bool:
    return bool(getattr(module.conditioner, "text_dim", 0))


def _fake_batch(module: VideoDiffusionModule, batch_size: int, seed: int) -> dict[str, Any]:
    """A batch of random videos in [-1, 1] (plus labels or captions), shaped like the config's data."""
    generator = torch.Generator().manual_seed(seed)
    video = torch.rand((batch_size, *module.video_shape), generator=generator) * 2 - 1
    batch: dict[str, Any] = {"video": video}
    if module.conditioner.num_classes:
        batch["label"] = torch.randint(0, module.conditioner.num_classes, (batch_size,), generator=generator)
    if _is_text_conditional(module):
        batch["caption"] = _captions(batch_size)
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
    batch = {
        k: v.to(device) if isinstance(v, torch.Tensor) else v
        for k, v in _fake_batch(module, batch_size, module.seed).items()
    }
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
    """Seconds per generated video (decoding included) with the module's sampler and guidance scale."""
    captions = _captions(num_videos) if _is_text_conditional(module) else None
    _synchronize(device)
    start = time.perf_counter()
    module.generate(num_videos, generator=torch.Generator().manual_seed(0), captions=captions)
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
        "guidance_scale": module.guidance_scale,
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
        (
            "sampling time",
            f"{result['sample_s_per_video']:.2f} s/video ({result['sampler']}, {_guidance(result)})",
        ),
        (
            "peak memory, training",
            f"{result['peak_memory_train_mib']:.0f} MiB ({result['peak_memory_kind']})",
        ),
        ("peak memory, sampling", f"{result['peak_memory_sample_mib']:.0f} MiB"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


def _guidance(result: dict[str, Any]) -> str:
    scale = float(result["guidance_scale"])
    return "no guidance" if scale == 1.0 else f"guidance {scale:g}, two passes per step"


def compose_compared_configs(
    names: list[str], overrides: list[str], config_name: str = "bench"
) -> list[DictConfig]:
    """One config per model config name: ``conf/<config_name>.yaml`` with ``overrides`` and ``model=<name>``.

    A ``model=...`` choice among ``overrides`` is dropped; ``model.<key>=...`` overrides apply to every
    listed model. Uses the running Hydra app's config search path when there is one (``python -m
    vidgen.bench``), else ``conf/``.

    Raises:
        ConfigError: ``bench.compare`` with fewer than two names or a name without ``conf/model/<name>.yaml``.
    """
    if len(names) < 2:
        raise ConfigError("bench.compare", f"list two or more model configs to compare, got {names}")
    parsed = OverridesParser.create().parse_overrides([str(o) for o in overrides])
    kept = [o.input_line for o in parsed if o.key_or_group != "model"]

    def compose_all() -> list[DictConfig]:
        configs = []
        for name in names:
            try:
                configs.append(compose(config_name=config_name, overrides=[*kept, f"model={name}"]))
            except MissingConfigException as error:
                raise ConfigError(
                    "bench.compare", f"no model config '{name}' (conf/model/{name}.yaml)"
                ) from error
        return configs

    if GlobalHydra.instance().is_initialized():
        return compose_all()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose_all()


#: measurements compared as first / other; peak memory only where it is per model (CUDA allocator peak)
COMPARED = (
    ("params_trainable", "trainable params"),
    ("train_clips_per_s", "training throughput (clips/s)"),
    ("sample_s_per_video", "sampling time (s/video)"),
    ("peak_memory_train_mib", "peak memory, training (MiB)"),
    ("peak_memory_sample_mib", "peak memory, sampling (MiB)"),
)
_MEMORY_KEYS = ("peak_memory_train_mib", "peak_memory_sample_mib")


def run_comparison(names: list[str], configs: list[DictConfig]) -> dict[str, Any]:
    """Measure each config with :func:`run_bench`, one after the other (the previous module freed).

    Returns:
        ``{"compare": names, "results": [run_bench result + "config": name, ...], "ratios": {"<first> /
        <other>": {key: first / other}}}`` for the keys of :data:`COMPARED` (peak memory only on CUDA:
        on CPU the process peak RSS of a later model includes the earlier ones).
    """
    results = []
    for name, cfg in zip(names, configs, strict=True):
        results.append({"config": name, **run_bench(cfg)})
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    first = results[0]
    per_model = first["peak_memory_kind"] == "CUDA allocator peak"
    keys = [key for key, _ in COMPARED if per_model or key not in _MEMORY_KEYS]
    ratios = {
        f"{first['config']} / {other['config']}": {key: first[key] / other[key] for key in keys}
        for other in results[1:]
    }
    return {"compare": list(names), "results": results, "ratios": ratios}


def _cell(key: str, value: float) -> str:
    if key == "params_trainable":
        return f"{int(value):,} ({value / 1e6:.2f}M)"
    return f"{value:.0f}" if key in _MEMORY_KEYS else f"{value:.3f}"


def format_comparison(report: dict[str, Any]) -> str:
    """A markdown table: a row per measurement, a column per model, then the ratio column(s); the shared
    settings (shapes, device, batch, sampler) below it."""
    results = report["results"]
    header = ["", *(r["config"] for r in results), *report["ratios"]]
    rows = [["model", *(f"{r['model']} {r['model_size']}" for r in results), *("" for _ in report["ratios"])]]
    for key, label in COMPARED:
        ratios = [f"{ratio[key]:.3f}" if key in ratio else "n/a" for ratio in report["ratios"].values()]
        rows.append([label, *(_cell(key, r[key]) for r in results), *ratios])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    first = results[0]
    notes = [
        f"video / latent shape {tuple(first['video_shape'])} / {tuple(first['latent_shape'])}; "
        f"{first['device']} ({first['threads']} threads), {first['precision']}; batch {first['batch_size']}; "
        f"{first['sampler']}, {_guidance(first)}",
    ]
    notes.append("ratio = first / other: throughput above 1 or time below 1 means the first is faster")
    if first["peak_memory_kind"] != "CUDA allocator peak":
        notes.append("peak memory is the process peak RSS, shared by all models in this run: no ratio")
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])


@hydra.main(config_path=CONFIG_DIR, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    names = [str(name) for name in cfg.bench.get("compare") or []]
    try:
        if names:
            hydra_cfg = HydraConfig.get()
            configs = compose_compared_configs(
                names, list(hydra_cfg.overrides.task), hydra_cfg.job.config_name
            )
            result = run_comparison(names, configs)
            table = format_comparison(result)
        else:
            result = run_bench(cfg)
            table = format_table(result)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table)
    print(json.dumps(result, indent=2))
    out = Path(cfg.paths.run_dir) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
