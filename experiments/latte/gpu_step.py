"""The Latte training step on a GPU (issue 14's GPU check): vidgen's Latte-XL/2 at 16 x 4 x 32 x 32 latents in
bf16-mixed with SDPA, plain, with activation checkpointing, compiled, and both; the official Latte code and
diffusers' ``LatteTransformer3DModel`` at the same sizes where they fit. One prepared run:

``python experiments/latte/gpu_step.py [--size XL] [--batch-size 2] [--official /path/to/Latte/models/latte.py]
[--peers official,diffusers] [--settings plain,checkpointing,compile,checkpointing+compile] [--steps 10]
[--warmup 3] [--peak-tflops N] [--json out.json] [--device cuda]``

Per setting (each built fresh, one after another, so each gets its own peak memory): the median time of a
training step (forward, MSE against a fixed target, backward, AdamW, ``zero_grad``; the model and the inputs of
:mod:`vidgen.benchmark.peers`), the step FLOPs (forward + backward matrix products, FlopCounterMode on a meta
copy, a multiply-add = 2 FLOPs; recomputation under checkpointing not counted, so its TFLOP/s are the useful
rate), the achieved TFLOP/s and their share of the device's dense bf16 peak (``--peak-tflops``, else the
known peak of the device's name, else none), and the peak memory (the CUDA allocator's peak; on a CPU the
process peak RSS of :mod:`vidgen.benchmark.memory`). A setting that runs out of memory is reported as such.

The official code runs with its ``attention_mode="flash"`` (PyTorch SDPA) on a GPU, ``math`` on a CPU.
On a CPU the same script runs (``--device cpu``, tiny sizes through ``key=value`` overrides; the tests do
that), for checking, not for figures: compile and bf16 on a CPU measure something else.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import vidgen  # noqa: E402, F401  (registers the config resolvers)
from vidgen.benchmark.memory import peak_memory, reset_peak_memory  # noqa: E402
from vidgen.benchmark.peers import (  # noqa: E402
    Contender,
    StepInputs,
    build_diffusers,
    build_official,
    build_vidgen,
    count_step_flops,
    load_official_module,
    time_round_robin,
    training_step,
)
from vidgen.runtime import CONFIG_DIR, pick_device  # noqa: E402

#: dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets, without sparsity), matched in this order
#: against the device name
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("A10G", 70.0),
)

#: vidgen's settings: ``--settings`` name -> (row name, activation checkpointing, torch.compile)
VIDGEN_SETTINGS: dict[str, tuple[str, bool, bool]] = {
    "plain": ("vidgen", False, False),
    "checkpointing": ("vidgen + checkpointing", True, False),
    "compile": ("vidgen + compile", False, True),
    "checkpointing+compile": ("vidgen + checkpointing + compile", True, True),
}

#: the step the issue asks for: Latte-XL/2 on 16 x 4 x 32 x 32 latents (a 256 x 256 video through SD's VAE)
STEP_OVERRIDES = [
    "model=latte_v1",
    "model.patch_size=2",
    "data.num_frames=16",
    "data.resolution=32",
    "data.channels=4",
    "autoencoder=identity",
    "conditioner=none",
]


def device_peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of the device called ``name`` (first match of :data:`PEAK_BF16_TFLOPS`), or None."""
    for key, peak in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower():
            return peak
    return None


def compose_step_config(size: str, overrides: list[str]) -> Any:
    """The bench config of the step: :data:`STEP_OVERRIDES` at ``model.size=size`` plus ``overrides``."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="bench",
            overrides=[*STEP_OVERRIDES, f"model.size={size}", *overrides, "paths.run_dir=/tmp/gpu_step"],
        )


def achieved(step_flops: int, median_ms: float, peak_tflops: float | None) -> tuple[float, float | None]:
    """``(TFLOP/s, share of the peak or None)`` of ``step_flops`` done in ``median_ms``."""
    tflops = step_flops / (median_ms / 1e3) / 1e12
    return tflops, (tflops / peak_tflops if peak_tflops else None)


def _build(name: str, cfg: Any, official: Any, checkpointing: bool) -> tuple[Contender, Any]:
    """One contender and the sizes it is built at: vidgen's Latte (with ``checkpointing``), or a peer at the
    sizes of vidgen's (read from a meta-device build: no weights are made for it)."""
    if name in ("official", "diffusers"):
        with torch.device("meta"):
            _, arch = build_vidgen(cfg, [])
        if name == "official":
            return build_official(arch, official, "flash" if torch.cuda.is_available() else "math"), arch
        return build_diffusers(arch), arch
    vidgen_contender, arch = build_vidgen(cfg, [])
    vidgen_contender.module.model.gradient_checkpointing = checkpointing
    return vidgen_contender, arch


def model_step_flops(contender: Contender, inputs: StepInputs) -> tuple[int, int]:
    """``(forward, forward + backward)`` FLOPs of the step without activation checkpointing's recomputation
    (the model FLOPs, so that TFLOP/s with and without checkpointing are the same useful rate)."""
    model = getattr(contender.module, "model", None)
    checkpointing = bool(getattr(model, "gradient_checkpointing", False))
    if checkpointing:
        model.gradient_checkpointing = False
    try:
        return count_step_flops(contender.module, inputs)
    finally:
        if checkpointing:
            model.gradient_checkpointing = True


def measure_setting(
    build: Callable[[], tuple[Contender, Any]],
    compile_it: bool,
    batch_size: int,
    cfg: Any,
    device: torch.device,
    precision: str,
    steps: int,
    warmup: int,
    peak_tflops: float | None,
) -> dict[str, Any]:
    """Build one model, count its step FLOPs, time ``steps`` steps after ``warmup`` and read its peak memory.
    Out of memory gives ``{"status": "out of memory"}``."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    reset_peak_memory(device)
    row: dict[str, Any] = {"status": "ok"}
    try:
        torch.manual_seed(int(cfg.seed))
        contender, arch = build()
        inputs = StepInputs.random(arch, batch_size, int(cfg.diffusion.num_timesteps), int(cfg.seed))
        forward, total = model_step_flops(contender, inputs)
        module = contender.module.to(device).train()
        if compile_it:
            module.compile()
        step = training_step(module, inputs.to(device), dict(cfg.optim), device, precision)
        times = time_round_robin({contender.name: step}, steps, warmup, device)[contender.name]
        median_ms = statistics.median(times) * 1e3
        tflops, share = achieved(total, median_ms, peak_tflops)
        peak, kind = peak_memory(device)
        row.update(
            implementation=contender.implementation,
            params=sum(p.numel() for p in module.parameters() if p.requires_grad),
            forward_flops=forward,
            step_flops=total,
            median_step_ms=median_ms,
            step_ms=[t * 1e3 for t in times],
            tflops=tflops,
            peak_share=share,
            peak_memory_gib=peak / 2**30,
            peak_memory_kind=kind,
        )
    except torch.cuda.OutOfMemoryError:
        row = {"status": "out of memory"}
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting of the issue's GPU check; returns the rows and the conditions they were taken in."""
    cfg = compose_step_config(args.size, list(args.overrides))
    device = pick_device(args.device)
    precision = args.precision
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak_tflops = args.peak_tflops or (device_peak_tflops(device_name) if device.type == "cuda" else None)
    official = load_official_module(args.official) if args.official and "official" in args.peers else None
    settings = [VIDGEN_SETTINGS[name] for name in args.settings]
    settings += [(peer, False, False) for peer in args.peers if peer != "official" or official is not None]
    rows = []
    for name, checkpointing, compile_it in settings:
        kind = name if name in ("official", "diffusers") else "vidgen"
        row = measure_setting(
            lambda kind=kind, checkpointing=checkpointing: _build(kind, cfg, official, checkpointing),
            compile_it,
            args.batch_size,
            cfg,
            device,
            precision,
            args.steps,
            args.warmup,
            peak_tflops,
        )
        rows.append({"setting": name, "checkpointing": checkpointing, "compile": compile_it, **row})
        print(format_row(rows[-1]), flush=True)
    return {
        "device": device_name,
        "peak_bf16_tflops": peak_tflops,
        "precision": precision,
        "size": args.size,
        "batch_size": args.batch_size,
        "latent": [4, int(cfg.data.num_frames), int(cfg.data.resolution), int(cfg.data.resolution)],
        "steps": args.steps,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "official_skipped": "official" in args.peers and official is None,
        "rows": rows,
    }


def format_row(row: dict[str, Any]) -> str:
    """One Markdown table row."""
    if row["status"] != "ok":
        return f"| {row['setting']} | {row['status']} | | | | |"
    share = "n/a" if row["peak_share"] is None else f"{100 * row['peak_share']:.1f}%"
    return (
        f"| {row['setting']} | {row['median_step_ms']:.1f} | {row['step_flops'] / 1e12:.3f} | "
        f"{row['tflops']:.1f} | {share} | {row['peak_memory_gib']:.2f} |"
    )


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of :func:`run`'s result."""
    head = (
        f"Latte-{result['size']}/2, batch {result['batch_size']}, latents {result['latent']}, "
        f"{result['precision']}, {result['device']} (peak {result['peak_bf16_tflops']} TFLOP/s)\n\n"
        "| setting | step ms (median) | step TFLOPs | TFLOP/s | of peak | peak memory GiB |\n"
        "|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(format_row(row) for row in result["rows"])])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="XL", help="Latte size (S, B, L, XL; default XL)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--official", default=None, help="a local copy of the official models/latte.py")
    parser.add_argument(
        "--peers",
        type=lambda text: [p for p in text.split(",") if p],
        default=["official", "diffusers"],
        help="comma-separated: official, diffusers (default both; '' for none)",
    )
    parser.add_argument(
        "--settings",
        type=lambda text: [s for s in text.split(",") if s],
        default=list(VIDGEN_SETTINGS),
        help=f"comma-separated vidgen settings (default all: {','.join(VIDGEN_SETTINGS)})",
    )
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation included)")
    parser.add_argument("--precision", default="bf16-mixed", choices=["bf16-mixed", "32-true"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument("--device", default="cuda", help="cuda | cpu | auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the bench config")
    args = parser.parse_args(argv)
    unknown = [p for p in args.peers if p not in ("official", "diffusers")]
    if unknown:
        parser.error(f"--peers: unknown {unknown}; choose from official, diffusers")
    unknown = [s for s in args.settings if s not in VIDGEN_SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; choose from {', '.join(VIDGEN_SETTINGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(format_table(result))
    if result["official_skipped"]:
        print("official: skipped (give --official /path/to/Latte/models/latte.py)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
