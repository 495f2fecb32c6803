"""Report of a Latent-Shift ablation sweep: the Latte sweep report plus training and sampling speed.

``python experiments/latent_shift/report.py <multirun dir> [--metric synthetic_fvd] [--output-dir DIR]
[--time-sampling N] [--device cpu|cuda|auto]``

Reads the multirun folder as ``experiments/latte/report.py`` does (its ``collect``: one arm per job, named by
the overrides that differ; parameters from the checkpoint, else the config's model on the meta device; GFLOPs
of one forward pass of one clip; the ``metrics_history.jsonl`` rows) and adds, per arm:

* training speed: ``s/step`` = the fit loop's wall-clock time up to the last evaluation (``train_seconds`` of
  that row: the training steps, validation and its sample videos, not the periodic evaluations) divided by
  its step; ``clips/s`` = clips per step (``data.batch_size`` x processes, when the config names the number
  of devices; else per process, marked ``/proc``) divided by ``s/step``;
* sampling speed from the evaluations: the fastest periodic evaluation (``eval_seconds``; the first one of a
  sweep may also train the in-domain classifier or compute real statistics) divided by the generated clips
  per evaluation (``evaluation.num_fake``): seconds per clip with the run's sampler, metrics included;
* with ``--time-sampling N``: seconds per clip of ``N`` clips generated from ``checkpoints/last.ckpt`` with
  the run's sampler and guidance (sampling and decoding only), on ``--device``.

Writes ``report.md`` (one row per arm), ``report.png`` (the chosen metric against training steps) and
``report.json`` into the multirun folder, or ``--output-dir``; the Markdown and JSON hold the Latte report's
columns plus the speed ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from experiments.latte import report as sweep_report  # noqa: E402

HISTORY_FILE = sweep_report.HISTORY_FILE


# ------------------------------------------------------------------------------------------------ speeds
def _resolved_config(job: Path) -> dict[str, Any]:
    path = job / "config_resolved.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _processes(config: dict[str, Any]) -> int | None:
    """Training processes of the run when the config names them (``devices`` x ``num_nodes``), else None."""
    trainer = config.get("trainer") or {}
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes", 1)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int) and nodes > 0:
        return devices * nodes
    return None


def _clips_per_evaluation(config: dict[str, Any]) -> int | None:
    """Generated clips per evaluation: ``evaluation.num_fake``, else the largest protocol count."""
    value = (config.get("evaluation") or {}).get("num_fake")
    if value:
        return int(value)
    counts = [int(m["num_fake"]) for m in (config.get("metrics") or {}).values() if m.get("num_fake")]
    return max(counts) if counts else None


def speeds(job: Path) -> dict[str, Any]:
    """Training and evaluation-sampling speed of one job (see the module docstring); None where unknown."""
    config = _resolved_config(job)
    rows = sweep_report.read_history(job)
    timed = [r for r in rows if r.get("train_seconds") and int(r["step"]) > 0]
    out: dict[str, Any] = {
        "s_per_step": None,
        "clips_per_s": None,
        "clips_per_s_scope": None,
        "eval_s_per_clip": None,
        "sampler": None,
    }
    if timed:
        last = timed[-1]
        out["s_per_step"] = float(last["train_seconds"]) / int(last["step"])
        batch = (config.get("data") or {}).get("batch_size")
        processes = _processes(config)
        if batch:
            out["clips_per_s"] = int(batch) * (processes or 1) / out["s_per_step"]
            out["clips_per_s_scope"] = "all" if processes else "per process"
    evals = [float(r["eval_seconds"]) for r in rows if r.get("eval_seconds")]
    clips = _clips_per_evaluation(config)
    if evals and clips:
        out["eval_s_per_clip"] = min(evals) / clips
    sampler = config.get("sampler") or {}
    if sampler:
        guidance = config.get("guidance_scale", 1.0)
        out["sampler"] = f"{sampler.get('name')} {sampler.get('steps')}" + (
            f", guidance {guidance}" if guidance not in (None, 1, 1.0) else ""
        )
    return out


def time_sampling(job: Path, num: int, device: str = "auto") -> float | None:
    """Seconds per clip of ``num`` clips generated from the job's ``last.ckpt`` (None without one)."""
    checkpoint = job / "checkpoints" / "last.ckpt"
    if num < 1 or not checkpoint.is_file():
        return None
    import torch

    from vidgen.lit.build import load_module_from_checkpoint
    from vidgen.runtime import pick_device

    module, cfg = load_module_from_checkpoint(checkpoint)
    module.to(pick_device(device))
    captions = None
    if getattr(module.conditioner, "text_dim", 0):
        from vidgen.config.instantiate import instantiate_node

        captions = list(instantiate_node(cfg.data).sample_captions(num))
    generator = torch.Generator().manual_seed(0)
    module.generate(1, generator=generator, captions=None if captions is None else captions[:1])  # warm-up
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)
    start = time.perf_counter()
    module.generate(num, generator=generator, captions=captions)
    if module.device.type == "cuda":
        torch.cuda.synchronize(module.device)
    return (time.perf_counter() - start) / num


# ------------------------------------------------------------------------------------------------ report
def collect(multirun: Path, time_sampling_clips: int = 0, device: str = "auto") -> list[dict[str, Any]]:
    """The Latte report's records, each with ``speed`` added."""
    records = sweep_report.collect(multirun)
    for record in records:
        job = Path(multirun) / record["job"]
        record["speed"] = speeds(job)
        record["speed"]["measured_s_per_clip"] = (
            time_sampling(job, time_sampling_clips, device) if time_sampling_clips else None
        )
    return records


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _row(record: dict[str, Any], metrics: list[str], measured: bool) -> list[str]:
    """The cells of one arm: size, training and sampling speed, then ``metrics``."""
    number = sweep_report._number
    speed = record["speed"]
    clips = speed["clips_per_s"]
    clips_cell = "n/a" if clips is None else f"{clips:.3g}"
    if clips is not None and speed["clips_per_s_scope"] == "per process":
        clips_cell += " /proc"
    cells = [
        record["arm"],
        f"{record['params']:,}" if record["params"] is not None else "n/a",
        number(record["flops"] / 1e9 if record["flops"] is not None else None),
        str(record["final_step"]) if record["final_step"] is not None else "n/a",
        _seconds(speed["s_per_step"]),
        clips_cell,
        _seconds(speed["eval_s_per_clip"]),
    ]
    if measured:
        cells.append(_seconds(speed.get("measured_s_per_clip")))
    return cells + [number(record["final_metrics"].get(m)) for m in metrics]


def markdown(records: list[dict[str, Any]], metric: str | None, multirun: Path) -> str:
    """One row per arm: size, training and sampling speed, final metrics."""
    metrics = sweep_report.metric_columns(records, metric)
    measured = any(r["speed"].get("measured_s_per_clip") is not None for r in records)
    header = ["arm", "params", "GFLOPs", "step", "train s/step", "train clips/s", "sample s/clip (eval)"]
    header += ["sample s/clip (timed)"] if measured else []
    header += metrics
    samplers = sorted({r["speed"]["sampler"] for r in records if r["speed"]["sampler"]})
    lines = [
        f"# Sweep report: {multirun.name}",
        "",
        f"Multirun folder: `{multirun}`. Final values: the last evaluation of each arm (`{HISTORY_FILE}`). "
        "params: trainable denoiser parameters; GFLOPs: one forward pass of one clip (matrix multiplications, "
        "a multiply-add = 2 FLOPs); train s/step and clips/s: the fit loop's wall-clock time up to the last "
        "evaluation (validation and its sample videos included, the periodic evaluations not) per step, and "
        "the clips of a step over it; sample s/clip (eval): the fastest periodic evaluation's time per "
        f"generated clip ({', '.join(samplers) or 'the run sampler'}, metrics included)"
        + ("; (timed): generation from last.ckpt alone" if measured else "")
        + ".",
        "",
        *sweep_report.table_lines(header, [_row(r, metrics, measured) for r in records]),
        *sweep_report.footer_lines(records, metric),
    ]
    return "\n".join(lines) + "\n"


def write_report(
    multirun: Path,
    metric: str | None = None,
    output_dir: Path | None = None,
    time_sampling_clips: int = 0,
    device: str = "auto",
) -> dict[str, Path]:
    """Collect the sweep and write report.md, report.png (when there is a metric) and report.json."""
    multirun = Path(multirun)
    records = collect(multirun, time_sampling_clips, device)
    metric = sweep_report.choose_metric(records, metric)
    return sweep_report.save_report(
        records, metric, multirun, output_dir, markdown(records, metric, multirun)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun", type=Path, help="the multirun folder (holds one folder per job)")
    parser.add_argument("--metric", default=None, help="metric to plot and to lead the table")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: the multirun folder")
    parser.add_argument(
        "--time-sampling", type=int, default=0, metavar="N", help="also time N clips from last.ckpt"
    )
    parser.add_argument("--device", default="auto", help="device of --time-sampling (auto, cpu, cuda)")
    args = parser.parse_args(argv)
    if not args.multirun.is_dir():
        parser.error(f"{args.multirun} is not a folder")
    written = write_report(args.multirun, args.metric, args.output_dir, args.time_sampling, args.device)
    print(written["markdown"].read_text())
    print("Wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
