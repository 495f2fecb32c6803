"""Measuring one composed training config: the denoiser's trainable parameters, training throughput,
sampling time per video and peak memory (``python -m vidgen.bench``).

Throughput is clips/s over forward + backward + AdamW step on random clips of the config's shape, after
warm-up (with ``compile.enabled=true`` the denoiser is compiled first, as in training, and the warm-up steps
take the compilation); sampling time uses the configured sampler and guidance; peak memory is the CUDA
allocator peak on a GPU and the process peak RSS on a CPU, each model's own (:mod:`vidgen.benchmark.memory`).
Speed and memory targets live here, never in tests.

``bench.flops=true`` adds the sampling FLOPs per video, by stage (:mod:`vidgen.benchmark.sampling_flops`,
counted on the meta device); ``bench.time=false`` skips the timed training and sampling (and peak memory),
so paper-size FLOP comparisons run on any CPU (the parameter count then comes from the meta-device build).
"""

from __future__ import annotations

import contextlib
import platform
import time
from typing import Any

import torch
from omegaconf import DictConfig

from vidgen.benchmark.memory import RSS_SINCE_START, peak_memory, reset_peak_memory
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module, video_shape_from_config
from vidgen.lit.cpu_precision import warn_if_slow_bf16
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator
from vidgen.runtime import pick_device

__all__ = [
    "NOT_MEASURED",
    "TIMED_KEYS",
    "flops_setting",
    "format_table",
    "guidance_note",
    "measure_sampling",
    "measure_training",
    "run_bench",
    "tflops",
]


def _peak_memory_mib(device: torch.device) -> tuple[float, str]:
    peak, kind = peak_memory(device)
    return peak / 2**20, kind


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


#: the timed measurements, None when ``bench.time=false``
TIMED_KEYS = ("train_clips_per_s", "sample_s_per_video", "peak_memory_train_mib", "peak_memory_sample_mib")


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Measure ``cfg`` (a composed ``bench`` config: the train config plus the ``bench`` node) on
    ``bench.device``; returns the measurements and the settings they were taken with.

    ``bench.flops=true`` adds ``"sampling_flops"`` (:meth:`~vidgen.benchmark.sampling_flops.SamplingFlops.
    as_dict`); ``bench.time=false`` builds no real module and leaves the keys of :data:`TIMED_KEYS` None."""
    validate_config(cfg)
    settings = cfg.bench
    if not bool(settings.get("time", True)):
        return _untimed_bench(cfg)
    device = pick_device(str(settings.device))
    precision = str(settings.precision or cfg.trainer.precision)
    warn_if_slow_bf16(
        device.type, precision, "bench.precision" if settings.precision else "trainer.precision"
    )
    batch_size = int(settings.batch_size or cfg.data.batch_size)
    reset_peak_memory(device)  # this model's own peak, also when several are measured in one process
    module = build_module(cfg).to(device)
    module.configure_model()  # as the trainer does: compile.enabled compiles the denoiser (warm-up absorbs it)
    throughput = measure_training(
        module, batch_size, int(settings.train_steps), int(settings.warmup_steps), device, precision
    )
    train_peak, memory_kind = _peak_memory_mib(device)
    data_rows = _data_rows(cfg, module, batch_size, device, precision)
    reset_peak_memory(device)  # (the module stays resident: sampling's peak includes its weights)
    seconds_per_video = measure_sampling(module, int(settings.sample_videos), device)
    sample_peak, sample_kind = _peak_memory_mib(device)
    if sample_kind != memory_kind:  # one of the two resets did not take: neither peak is this phase's own
        memory_kind = RSS_SINCE_START
    result = {
        **_description(cfg, module),
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
        "peak_memory_kind": memory_kind,
        **data_rows,
    }
    if bool(settings.get("flops", False)):
        from vidgen.benchmark.sampling_flops import build_counting_module, sampling_flops

        del module  # the meta-device build for counting holds no memory; the timed module is done
        result["sampling_flops"] = sampling_flops(build_counting_module(cfg)).as_dict()
    return result


def _data_rows(
    cfg: DictConfig, module: VideoDiffusionModule, batch_size: int, device: torch.device, precision: str
) -> dict[str, Any]:
    """The data side (:mod:`vidgen.benchmark.loader`): ``loader_clips_per_s`` (``{loader: clips/s}``, with
    ``bench.loader_batches > 0``) and, with ``bench.cached_step``, the training step's clips/s on encoded and on
    cached batches timed round-robin (``step_clips_per_s_encoded`` / ``_cached``)."""
    from vidgen.benchmark.loader import measure_cached_training, measure_loaders

    settings = cfg.bench
    rows: dict[str, Any] = {}
    if int(settings.get("loader_batches") or 0) > 0:
        rows["loader_clips_per_s"] = measure_loaders(cfg, int(settings.loader_batches))
    if bool(settings.get("cached_step", False)):
        batch = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v
            for k, v in _fake_batch(module, batch_size, module.seed).items()
        }
        with _autocast(device, precision):
            encoded, cached = measure_cached_training(
                module, batch, int(settings.train_steps), int(settings.warmup_steps)
            )
        rows["step_clips_per_s_encoded"], rows["step_clips_per_s_cached"] = encoded, cached
    return rows


def _description(cfg: DictConfig, module: Any) -> dict[str, Any]:
    """The keys of a bench result that describe the measured model: its name, size, trainable parameters,
    video and latent shapes."""
    c, f, h, w = video_shape_from_config(cfg)
    return {
        "model": str(cfg.model._target_).rsplit(".", 1)[-1],
        "model_size": str(cfg.model.get("size", "")),
        "params_trainable": module.num_denoiser_params(),
        "video_shape": [c, f, h, w],
        "latent_shape": list(module.latent_shape),
    }


def _untimed_bench(cfg: DictConfig) -> dict[str, Any]:
    """:func:`run_bench` under ``bench.time=false``: the parameter count and shapes of the meta-device build
    (and its sampling FLOPs with ``bench.flops``), the timed keys None."""
    from vidgen.benchmark.sampling_flops import build_counting_module, sampling_flops

    module = build_counting_module(cfg)
    result = {
        **_description(cfg, module),
        "device": "none (bench.time=false)",
        "threads": torch.get_num_threads(),
        "precision": "n/a",
        "batch_size": 1,
        "sampler": f"{cfg.sampler.name} {cfg.sampler.steps} steps",
        "guidance_scale": module.guidance_scale,
        **dict.fromkeys(TIMED_KEYS),
        "peak_memory_kind": "not measured",
    }
    if bool(cfg.bench.get("flops", False)):
        result["sampling_flops"] = sampling_flops(module).as_dict()
    return result


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of one :func:`run_bench` result."""

    def timed(key: str, text: str) -> str:
        return NOT_MEASURED if result[key] is None else text.format(result[key])

    rows = [
        ("model", f"{result['model']} {result['model_size']}"),
        ("trainable params", f"{result['params_trainable']:,} ({result['params_trainable'] / 1e6:.2f}M)"),
        ("video / latent shape", f"{tuple(result['video_shape'])} / {tuple(result['latent_shape'])}"),
        (
            "device",
            timed(
                "train_clips_per_s",
                f"{result['device']} ({result['threads']} threads), {result['precision']}",
            ),
        ),
        (
            "training throughput",
            timed("train_clips_per_s", f"{{:.2f}} clips/s (batch {result['batch_size']})"),
        ),
        (
            "sampling time",
            timed("sample_s_per_video", f"{{:.2f}} s/video ({result['sampler']}, {guidance_note(result)})"),
        ),
        (
            "peak memory, training",
            timed("peak_memory_train_mib", f"{{:.0f}} MiB ({result['peak_memory_kind']})"),
        ),
        ("peak memory, sampling", timed("peak_memory_sample_mib", "{:.0f} MiB")),
    ]
    for name, value in (result.get("loader_clips_per_s") or {}).items():
        rows.append((f"data loader, {name}", f"{value:.2f} clips/s"))
    if result.get("step_clips_per_s_cached") is not None:
        encoded, cached = result["step_clips_per_s_encoded"], result["step_clips_per_s_cached"]
        rows.append(
            (
                "training step, encoded / cached",
                f"{encoded:.2f} / {cached:.2f} clips/s ({cached / encoded:.2f}x from a data.cache; round-robin)",
            )
        )
    flops = result.get("sampling_flops")
    if flops:
        rows += [
            (
                "sampling TFLOPs / video",
                f"{tflops(flops['total_flops'])} ({tflops(flops['total_macs'])} TMACs; {flops_setting(flops)})",
            ),
            *(
                (f"  {stage['label']}", f"{tflops(stage['flops'])} TFLOPs ({stage['calls']} x 1 forward)")
                for stage in flops["stages"].values()
            ),
            ("FLOP convention", flops["convention"]),
            *(("note", note) for note in flops["notes"]),
        ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"| {name.ljust(width)} | {value} |" for name, value in rows)


#: what a timed cell says under ``bench.time=false``
NOT_MEASURED = "not measured (bench.time=false)"


def tflops(value: float) -> str:
    """FLOPs (or MACs) as a count of tera, 4 significant digits."""
    return f"{value / 1e12:.4g}"


def flops_setting(flops: dict[str, Any]) -> str:
    """The sampler, model calls and guidance passes a ``sampling_flops`` entry was counted with."""
    if flops["guidance_passes"] == 2:
        passes = f"2 passes (guidance {flops['guidance_scale']:g})"
    else:
        passes = "1 pass (no guidance)"
    return f"{flops['sampler']}: {flops['model_calls']} model calls x {passes}"


def guidance_note(result: dict[str, Any]) -> str:
    """How a result sampled: without guidance, or with the scale and two denoiser passes per step."""
    scale = float(result["guidance_scale"])
    return "no guidance" if scale == 1.0 else f"guidance {scale:g}, two passes per step"
