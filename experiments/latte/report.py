"""Report of an ablation sweep: a Markdown table and a metric-vs-steps plot, one row / line per arm.

``python experiments/latte/report.py <multirun dir> [--metric synthetic_fvd] [--output-dir DIR]``

Reads every job folder of a Hydra multirun (``<multirun dir>/<job number>/``):

* ``.hydra/overrides.yaml``: the job's overrides; the arm is named by the overrides whose values differ
  between the jobs (with one job: the keys of the sweep, ``hydra.sweeper.params`` in ``multirun.yaml``);
* ``metrics_history.jsonl``: the evaluations during training (``evaluation.every_n_steps``) and at the end
  (``evaluation.at_end``), one JSON row ``{"step", "metrics", "train_seconds"?}`` each; for a step written
  twice (a resumed run) the last row counts;
* the parameter count: ``vidgen_num_denoiser_params`` of ``checkpoints/last.ckpt`` when it exists (read with
  mmap, nothing is loaded), else the denoiser built from ``config_resolved.yaml`` on the meta device, which
  also gives the FLOPs of one forward pass of one clip (``vidgen.models.latte.count_flops``: matrix
  multiplications, a multiply-add = 2 FLOPs). A model with pretrained weights (``model.pretrained_path``,
  the Latent-Shift U-Nets) is built without them: the weights do not change the shapes. A text model reads
  ``conditioner.max_length`` tokens of width ``model.text_dim`` (Latte: 8 tokens) or
  ``model.cross_attention_dim`` (the Latent-Shift U-Nets, with ``conditioner=text``).

Writes ``report.md`` (arm, parameters, GFLOPs, last step, training time, the final value of every metric),
``report.png`` (the chosen metric against training steps, one line per arm) and ``report.json`` (the same
numbers) into the multirun folder, or ``--output-dir``. ``--metric`` picks the plotted metric (default:
``synthetic_fvd``, else ``fvd``, else the first one found); it also leads the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

PREFERRED_METRICS = ("synthetic_fvd", "fvd")
HISTORY_FILE = "metrics_history.jsonl"  # vidgen.lit.periodic_evaluation.HISTORY_FILE


# ------------------------------------------------------------------------------------------------ reading
def job_dirs(multirun: Path) -> list[Path]:
    """Job folders (those with ``.hydra/overrides.yaml``), in job-number order."""
    jobs = [p for p in multirun.iterdir() if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def read_overrides(job: Path) -> dict[str, str]:
    """``key -> value`` of the job's overrides (``+`` / ``++`` / ``~`` prefixes dropped)."""
    out: dict[str, str] = {}
    for item in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def read_history(job: Path) -> list[dict[str, Any]]:
    """The job's evaluation rows in step order (the last row of a step wins)."""
    path = job / HISTORY_FILE
    rows: dict[int, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[int(row["step"])] = row
    return [rows[step] for step in sorted(rows)]


def _task_name(multirun: Path) -> str | None:
    path = multirun / "multirun.yaml"
    if path.is_file():
        return (yaml.safe_load(path.read_text()) or {}).get("task_name")
    return None


def sweep_keys(multirun: Path) -> list[str]:
    """The keys of ``hydra.sweeper.params`` recorded in ``multirun.yaml`` (empty when unknown)."""
    path = multirun / "multirun.yaml"
    if not path.is_file():
        return []
    config = yaml.safe_load(path.read_text()) or {}
    params = ((config.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    return [str(k) for k in params]


def arm_labels(overrides: list[dict[str, str]], fallback_keys: list[str]) -> list[str]:
    """One label per job: ``key=value`` of the overrides that differ between jobs."""
    keys = list(dict.fromkeys(k for o in overrides for k in o))
    varying = [k for k in keys if len({o.get(k) for o in overrides}) > 1]
    if not varying:
        varying = [k for k in fallback_keys if any(k in o for o in overrides)]
    labels = []
    for number, o in enumerate(overrides):
        parts = [f"{k}={o[k]}" for k in varying if k in o]
        labels.append(", ".join(parts) if parts else f"job {number}")
    return labels


def checkpoint_params(job: Path) -> int | None:
    """``vidgen_num_denoiser_params`` stored in ``checkpoints/last.ckpt`` (None without one)."""
    path = job / "checkpoints" / "last.ckpt"
    if not path.is_file():
        return None
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # a sharded (folder) checkpoint, a foreign file: count from the config instead
        return None
    value = checkpoint.get("vidgen_num_denoiser_params") if isinstance(checkpoint, dict) else None
    return int(value) if value is not None else None


def model_size(job: Path) -> tuple[int | None, int | None]:
    """``(trainable parameters, FLOPs of one forward of one clip)`` of the denoiser in the job's
    ``config_resolved.yaml``, built on the meta device; ``(None, None)`` when that is not possible."""
    path = job / "config_resolved.yaml"
    if not path.is_file():
        return None, None
    try:
        import torch
        from hydra.utils import instantiate

        config = yaml.safe_load(path.read_text())
        node = dict(config["model"])
        if node.get("pretrained_path"):  # the shapes only: never read the weights here
            node["pretrained_path"] = None
        with torch.device("meta"):
            model = instantiate(node)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    except Exception:
        return None, None
    try:
        from vidgen.conditioning import Cond
        from vidgen.models.latte import count_flops

        shape = (
            1,
            int(node["in_channels"]),
            int(node["num_frames"]),
            int(node["input_size"]),
            int(node["input_size"]),
        )
        cond = None
        if int(node.get("num_classes") or 0) > 0:
            cond = Cond(labels=torch.zeros(1, dtype=torch.long, device="meta"))
        if int(node.get("text_dim") or 0) > 0:
            text = torch.zeros(1, 8, int(node["text_dim"]), device="meta")
            cond = Cond(labels=None if cond is None else cond.labels, text=text)
        conditioner = config.get("conditioner") or {}
        if int(node.get("cross_attention_dim") or 0) > 0 and conditioner.get("kind") == "text":
            length = int(conditioner.get("max_length") or 77)
            text = torch.zeros(1, length, int(node["cross_attention_dim"]), device="meta")
            cond = Cond(labels=None if cond is None else cond.labels, text=text)
        flops = count_flops(model, shape, cond)
    except Exception:
        flops = None
    return params, flops


# ------------------------------------------------------------------------------------------------ report
def collect(multirun: Path) -> list[dict[str, Any]]:
    """One record per job: label, overrides, history, params, flops, final step / metrics, train time."""
    jobs = job_dirs(multirun)
    if not jobs:
        raise SystemExit(f"no job folders with .hydra/overrides.yaml under {multirun}")
    overrides = [read_overrides(job) for job in jobs]
    labels = arm_labels(overrides, sweep_keys(multirun))
    records = []
    for job, label, over in zip(jobs, labels, overrides, strict=True):
        history = read_history(job)
        params_cfg, flops = model_size(job)
        params = checkpoint_params(job)
        seconds = [row["train_seconds"] for row in history if row.get("train_seconds") is not None]
        final = history[-1] if history else None
        records.append(
            {
                "job": job.name,
                "arm": label,
                "overrides": over,
                "params": params if params is not None else params_cfg,
                "flops": flops,
                "final_step": final["step"] if final else None,
                "final_metrics": final["metrics"] if final else {},
                "train_seconds": max(seconds) if seconds else None,
                "history": [{"step": row["step"], "metrics": row["metrics"]} for row in history],
            }
        )
    return records


def choose_metric(records: list[dict[str, Any]], wanted: str | None) -> str | None:
    names = list(dict.fromkeys(k for r in records for row in r["history"] for k in row["metrics"]))
    if wanted is not None:
        if wanted not in names:
            raise SystemExit(f"metric {wanted!r} is in no history; found: {', '.join(names) or 'none'}")
        return wanted
    for name in PREFERRED_METRICS:
        if name in names:
            return name
    return names[0] if names else None


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}g}"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def metric_columns(records: list[dict[str, Any]], metric: str | None) -> list[str]:
    """Every final metric of the arms, in first-seen order, with ``metric`` (when given) first."""
    metrics = list(dict.fromkeys(k for r in records for k in r["final_metrics"]))
    if metric in metrics:
        metrics.remove(metric)
        metrics.insert(0, metric)
    return metrics


def table_lines(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A Markdown table: the header, its separator and one line per row of cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def footer_lines(records: list[dict[str, Any]], metric: str | None) -> list[str]:
    """After a sweep table: the arms without evaluations, and the plot of ``metric`` (report.png)."""
    lines = []
    missing = [r["arm"] for r in records if not r["history"]]
    if missing:
        lines += ["", f"No evaluations found for: {', '.join(missing)} (no {HISTORY_FILE})."]
    if metric is not None:
        lines += ["", f"![{metric} against training steps](report.png)"]
    return lines


def markdown(records: list[dict[str, Any]], metric: str | None, multirun: Path) -> str:
    """The report as Markdown: a table (one row per arm) and the plot."""
    metrics = metric_columns(records, metric)
    header = ["arm", "params", "GFLOPs", "step", "train time", *metrics]
    rows = [
        [
            r["arm"],
            f"{r['params']:,}" if r["params"] is not None else "n/a",
            _number(r["flops"] / 1e9 if r["flops"] is not None else None),
            str(r["final_step"]) if r["final_step"] is not None else "n/a",
            _minutes(r["train_seconds"]),
            *(_number(r["final_metrics"].get(m)) for m in metrics),
        ]
        for r in records
    ]
    lines = [
        f"# Sweep report: {multirun.name}",
        "",
        f"Multirun folder: `{multirun}`. Final values: the last evaluation of each arm "
        f"(`{HISTORY_FILE}`); params: trainable denoiser parameters; GFLOPs: one forward pass of one clip "
        "(matrix multiplications, a multiply-add = 2 FLOPs); train time: wall-clock time of the training "
        "loop (validation and sample videos included, the periodic evaluations not) up to the last "
        "evaluation.",
        "",
        *table_lines(header, rows),
        *footer_lines(records, metric),
    ]
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], metric: str, path: Path, title: str) -> None:
    """``metric`` against training steps, one line per arm, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in records:
        points = [(row["step"], row["metrics"][metric]) for row in r["history"] if metric in row["metrics"]]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, marker="o", label=r["arm"])
    axes.set_xlabel("training step")
    axes.set_ylabel(metric)
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    if any(r["history"] for r in records):
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(
    multirun: Path, metric: str | None = None, output_dir: Path | None = None
) -> dict[str, Path]:
    """Collect the sweep and write report.md, report.png (when there is a metric) and report.json."""
    multirun = Path(multirun)
    records = collect(multirun)
    metric = choose_metric(records, metric)
    return save_report(records, metric, multirun, output_dir, markdown(records, metric, multirun))


def save_report(
    records: list[dict[str, Any]], metric: str | None, multirun: Path, output_dir: Path | None, table: str
) -> dict[str, Path]:
    """Write ``table`` to report.md, ``records`` to report.json and, when there is a ``metric``, its curves
    to report.png, in ``output_dir`` (default: the ``multirun`` folder). Returns the written paths by kind."""
    out = Path(output_dir) if output_dir is not None else multirun
    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out / "report.md", "json": out / "report.json"}
    written["markdown"].write_text(table)
    written["json"].write_text(json.dumps({"metric": metric, "arms": records}, indent=2, default=str))
    if metric is not None:
        written["png"] = out / "report.png"
        title = _task_name(multirun) or multirun.parent.parent.name
        plot(records, metric, written["png"], f"{title} ({multirun.name})")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun", type=Path, help="the multirun folder (holds one folder per job)")
    parser.add_argument("--metric", default=None, help="metric to plot and to lead the table")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: the multirun folder")
    args = parser.parse_args(argv)
    if not args.multirun.is_dir():
        parser.error(f"{args.multirun} is not a folder")
    written = write_report(args.multirun, args.metric, args.output_dir)
    print(written["markdown"].read_text())
    print("Wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
