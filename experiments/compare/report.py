"""Report of a head-to-head comparison of video-diffusion methods: quality against training and sampling cost.

``python experiments/compare/report.py <multirun dir> [--metric NAME] [--output-dir DIR] [--allow-missing]``

Inputs: a Hydra multirun folder (``experiment=compare/methods``), one folder ``<multirun>/<job number>/`` per
job (an arm x a seed), each holding

* ``.hydra/overrides.yaml``: the job's overrides (``["arm=latte", "seed=1", ...]``);
* ``config_resolved.yaml`` (optional here): the resolved config; ``compare.arm`` and ``seed`` name the arm and
  the seed when ``costs.json`` does not;
* ``metrics_history.jsonl``: one JSON row per evaluation ``{"step", "metrics": {name: value},
  "train_seconds"?}`` of the job's last training stage (the diffusion model); for a step written twice the
  last row counts (``experiments/latte/report.py``'s ``read_history``);
* ``costs.json``, written by the training job when it ends::

    {"arm", "method", "seed", "budget": {"kind": "steps" | "compute" | "wall", "steps", "train_flops",
     "seconds"}, "params", "stages": [{"name", "steps", "batch_size", "params", "flops_per_clip",
     "flops_per_step", "flops_offset", "train_flops", "train_seconds"}, ...], "train_flops_per_clip",
     "train_flops", "train_seconds", "sample_flops_per_video", "sample_seconds_per_video", "sampler",
     "model_calls", "peak_memory_bytes", "peak_memory_kind"}

  The stages are in training order (CMD: ``autoencoder`` then ``diffusion``; the other methods: ``diffusion``).
  The training FLOPs at an evaluation row of step ``s`` are ``flops_offset + s * flops_per_step`` of the last
  stage: what the earlier stages spent, plus the last stage's steps so far.

A job without ``costs.json`` or without evaluations stops the report with a message that lists every such
job (nothing is dropped silently); ``--allow-missing`` reports the other jobs and lists (and counts) the
left-out ones under the table.

Outputs, in the multirun folder or ``--output-dir``:

* ``report.md``: one Markdown table, one row per arm in sweep order (an arm's first job number): arm, method,
  seeds (n), trainable parameters (all stages), training GFLOPs per clip, total training FLOPs (one unit for
  every arm, named in the header), steps per stage (``150 + 600``), mean training time, sampling GFLOPs and
  seconds per video, peak memory (MiB, the largest over seeds, and how it was measured), then the final value
  (last evaluation) of every metric as ``mean ± std`` over seeds (sample std, ddof=1; one seed: the value and
  ``(n=1)``). Under it: the budget and whether the arms' total training FLOPs agree (within 5%), the FLOP
  convention, and "Within seed noise": per metric, the arms from best to worst and every pair of arms whose
  means differ by less than the sum of their stds (not separated by the seeds). Metrics whose name contains
  ``fvd``, ``fid``, ``lpips`` or ``loss`` are lower-better, the others higher-better.
* ``report_budget.png``: the chosen metric (``--metric``; default ``synthetic_fvd``, else ``fvd``, else the
  first found) against training FLOPs, one line per arm (mean over seeds at each evaluation step) with a
  shaded min-max band over seeds.
* ``report_pareto.png``: the final chosen metric (mean, error bar = std) against sampling GFLOPs per video
  (log axis), one labelled point per arm (with its seconds per video), the Pareto-optimal arms (no other arm
  both as cheap and at least as good) joined by a line.
* ``report.json``: the same numbers: per arm every table field, the per-seed values and the curve points;
  the table itself, the statements under it and the left-out jobs.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from experiments.latte import report as sweep_report  # noqa: E402

HISTORY_FILE = sweep_report.HISTORY_FILE
COSTS_FILE = "costs.json"
LOWER_BETTER = ("fvd", "fid", "lpips", "loss", "residual")
FLOPS_AGREEMENT = 0.05  # the tolerance for "equal compute"
FLOP_UNITS = ((1e18, "EFLOPs"), (1e15, "PFLOPs"), (1e12, "TFLOPs"), (1e9, "GFLOPs"), (1e6, "MFLOPs"))
# the numbers of costs.json averaged over seeds (peak memory: the largest), kept per seed in report.json
PER_SEED = (
    "params",
    "train_flops_per_clip",
    "train_flops",
    "train_seconds",
    "sample_flops_per_video",
    "sample_seconds_per_video",
    "peak_memory_bytes",
)
REQUIRED_COSTS = ("stages", *PER_SEED)  # present; a number may be null where it was not measured
REQUIRED_STAGE = ("name", "steps", "flops_per_step", "flops_offset")


# ------------------------------------------------------------------------------------------------ reading
def _config(job: Path) -> dict[str, Any]:
    path = job / "config_resolved.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def missing_files(job: Path) -> list[str]:
    """What the report needs and ``job`` lacks: ``costs.json`` and / or evaluations (empty when complete)."""
    missing = [] if (job / COSTS_FILE).is_file() else [COSTS_FILE]
    if not sweep_report.read_history(job):
        missing.append(f"{HISTORY_FILE} (no evaluations)")
    return missing


def read_costs(job: Path) -> dict[str, Any]:
    """The job's ``costs.json``, checked for the keys the report reads."""
    path = job / COSTS_FILE
    try:
        costs = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"cannot read {path}: {error}") from error
    absent = [key for key in REQUIRED_COSTS if key not in costs]
    if not costs.get("stages"):
        absent.append("stages (at least one)")
    for number, stage in enumerate(costs.get("stages") or []):
        absent += [f"stages[{number}].{key}" for key in REQUIRED_STAGE if key not in stage]
    if absent:
        raise SystemExit(f"{path} lacks {', '.join(dict.fromkeys(absent))}")
    return costs


def _identity(job: Path, costs: dict[str, Any]) -> tuple[str, Any]:
    """``(arm, seed)`` of a job: from costs.json, else the resolved config, else the overrides."""
    config, overrides = _config(job), sweep_report.read_overrides(job)
    arm = costs.get("arm") or (config.get("compare") or {}).get("arm") or overrides.get("arm") or job.name
    seed = costs.get("seed")
    if seed is None:
        seed = config.get("seed", overrides.get("seed"))
    return str(arm), seed


def read_job(job: Path) -> dict[str, Any]:
    """One job's record: arm, seed, costs, evaluations and final metrics."""
    costs = read_costs(job)
    arm, seed = _identity(job, costs)
    history = [
        {"step": int(row["step"]), "metrics": row["metrics"]} for row in sweep_report.read_history(job)
    ]
    return {
        "job": job.name,
        "arm": arm,
        "method": costs.get("method") or arm,
        "seed": seed,
        "overrides": sweep_report.read_overrides(job),
        "costs": costs,
        "history": history,
        "final_step": history[-1]["step"],
        "final_metrics": history[-1]["metrics"],
    }


def collect_jobs(multirun: Path, allow_missing: bool = False) -> tuple[list[dict[str, Any]], list[dict]]:
    """The complete jobs' records in job order, and the incomplete jobs ``{"job", "missing"}``.

    Raises SystemExit naming every incomplete job unless ``allow_missing`` (and always when none is complete).
    """
    folders = sweep_report.job_dirs(multirun)
    if not folders:
        raise SystemExit(f"no job folders with .hydra/overrides.yaml under {multirun}")
    left_out = [{"job": job.name, "missing": missing_files(job)} for job in folders]
    left_out = [entry for entry in left_out if entry["missing"]]
    if left_out and (not allow_missing or len(left_out) == len(folders)):
        details = "; ".join(f"{multirun / e['job']}: no {' and no '.join(e['missing'])}" for e in left_out)
        hint = "" if allow_missing else " (--allow-missing reports the other jobs)"
        raise SystemExit(
            f"{len(left_out)} of {len(folders)} jobs in {multirun} are incomplete{hint}: {details}"
        )
    skipped = {entry["job"] for entry in left_out}
    return [read_job(job) for job in folders if job.name not in skipped], left_out


# ------------------------------------------------------------------------------------------------ numbers
def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is better (FVD, FID, LPIPS, losses)."""
    return any(word in metric.lower() for word in LOWER_BETTER)


def spread(values: list[float]) -> dict[str, Any]:
    """``{"mean", "std", "n", "values"}``: the sample std (ddof=1), None with one value."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values), "values": values}


def _mean(values: Iterable[Any], scale: float = 1.0) -> float | None:
    """The mean of the known (not None) values divided by ``scale``; None when none is known."""
    known = [float(v) for v in values if v is not None]
    return statistics.fmean(known) / scale if known else None


def curve_point_flops(costs: dict[str, Any], step: int) -> float:
    """Training FLOPs spent at ``step`` of the last stage: the earlier stages' plus the last one's so far."""
    last = costs["stages"][-1]
    return float(last["flops_offset"]) + step * float(last["flops_per_step"])


def arm_curve(jobs: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """``metric`` at each evaluation step of an arm: mean, min, max over the seeds that have it there, and
    the training FLOPs of that step (mean over those seeds)."""
    by_step: dict[int, list[tuple[float, float]]] = {}
    for job in jobs:
        for row in job["history"]:
            if metric in row["metrics"] and row["metrics"][metric] is not None:
                flops = curve_point_flops(job["costs"], row["step"])
                by_step.setdefault(row["step"], []).append((flops, float(row["metrics"][metric])))
    points = []
    for step in sorted(by_step):
        flops, values = zip(*by_step[step], strict=True)
        points.append(
            {
                "step": step,
                "train_flops": statistics.fmean(flops),
                "mean": statistics.fmean(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        )
    return points


def _stage_steps(jobs: list[dict[str, Any]]) -> tuple[list[str], list[list[int]]]:
    """The stage names (of the first seed) and, per stage, every seed's step count."""
    names = [str(stage["name"]) for stage in jobs[0]["costs"]["stages"]]
    steps = [[int(job["costs"]["stages"][i]["steps"]) for job in jobs] for i in range(len(names))]
    return names, steps


def summarize_arm(jobs: list[dict[str, Any]], metrics: list[str]) -> dict[str, Any]:
    """One arm's table fields (means over seeds; peak memory: the largest), final metrics and per-seed values."""
    costs = [job["costs"] for job in jobs]

    def per_seed(key: str) -> list[Any]:
        return [c.get(key) for c in costs]

    names, steps = _stage_steps(jobs)
    memory = [b for b in per_seed("peak_memory_bytes") if b is not None]
    final = {
        m: spread([job["final_metrics"][m] for job in jobs if job["final_metrics"].get(m) is not None])
        for m in metrics
        if any(job["final_metrics"].get(m) is not None for job in jobs)
    }
    return {
        "arm": jobs[0]["arm"],
        "method": " / ".join(dict.fromkeys(str(job["method"]) for job in jobs)),
        "jobs": [job["job"] for job in jobs],
        "seeds": [job["seed"] for job in jobs],
        "n": len(jobs),
        "params": _mean(per_seed("params")),
        "train_gflops_per_clip": _mean(per_seed("train_flops_per_clip"), 1e9),
        "train_flops": _mean(per_seed("train_flops")),
        "stage_names": names,
        "stage_steps": steps,
        "train_seconds": _mean(per_seed("train_seconds")),
        "sample_gflops_per_video": _mean(per_seed("sample_flops_per_video"), 1e9),
        "sample_seconds_per_video": _mean(per_seed("sample_seconds_per_video")),
        "peak_memory_mib": max(memory) / 2**20 if memory else None,
        "peak_memory_kind": ", ".join(dict.fromkeys(str(k) for k in per_seed("peak_memory_kind") if k)),
        "samplers": sorted({str(c["sampler"]) for c in costs if c.get("sampler")}),
        "model_calls": sorted({int(c["model_calls"]) for c in costs if c.get("model_calls") is not None}),
        "budgets": list(
            {json.dumps(c.get("budget"), sort_keys=True): c.get("budget") for c in costs}.values()
        ),
        "final_steps": [job["final_step"] for job in jobs],
        "metrics": final,
        "per_seed": {key: per_seed(key) for key in PER_SEED},
    }


def group_arms(jobs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The jobs of each arm, arms in sweep order (their first job number), seeds in job order."""
    arms: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        arms.setdefault(job["arm"], []).append(job)
    return arms


def with_cost_and_value(arms: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The arms with a sampling cost and a finite final ``metric`` (those of the Pareto plot)."""
    return [
        a
        for a in arms
        if a["sample_gflops_per_video"] is not None
        and metric in a["metrics"]
        and math.isfinite(a["metrics"][metric]["mean"])
    ]


def pareto_arms(arms: list[dict[str, Any]], metric: str) -> list[str]:
    """The arms that no other arm dominates (sampling FLOPs no higher and final ``metric`` no worse, one of
    them strictly), cheapest first; only arms with a sampling cost and a finite value take part."""
    sign = 1.0 if lower_is_better(metric) else -1.0
    points = [
        (a["sample_gflops_per_video"], sign * a["metrics"][metric]["mean"], a["arm"])
        for a in with_cost_and_value(arms, metric)
    ]

    def dominated(cost: float, loss: float) -> bool:
        return any(c <= cost and v <= loss and (c < cost or v < loss) for c, v, _ in points)

    return [name for cost, loss, name in sorted(points) if not dominated(cost, loss)]


def separation(arms: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The arms with a finite final ``metric`` from best to worst by mean, the pairs whose means differ by
    less than the sum of their stds (an arm with one seed counts with std 0), and the arms without a value."""
    lower = lower_is_better(metric)
    known = [a for a in arms if metric in a["metrics"] and math.isfinite(a["metrics"][metric]["mean"])]
    order = sorted(known, key=lambda a: a["metrics"][metric]["mean"] * (1 if lower else -1))
    pairs = []
    for i, first in enumerate(order):
        for second in order[i + 1 :]:
            a, b = first["metrics"][metric], second["metrics"][metric]
            gap, noise = abs(a["mean"] - b["mean"]), (a["std"] or 0.0) + (b["std"] or 0.0)
            if gap <= noise:  # equal means are never separated, not even with one seed (std 0)
                pairs.append({"arms": [first["arm"], second["arm"]], "difference": gap, "std_sum": noise})
    return {
        "metric": metric,
        "lower_is_better": lower,
        "order": [a["arm"] for a in order],
        "not_separated": pairs,
        "no_value": [a["arm"] for a in arms if a not in known],
        "single_seed": [a["arm"] for a in known if int(a["metrics"][metric].get("n") or 1) < 2],
    }


# ------------------------------------------------------------------------------------------------ table
def flops_unit(values: Iterable[float | None]) -> tuple[float, str]:
    """The largest unit (scale, name) in which the largest of ``values`` is at least 1."""
    largest = max((v for v in values if v is not None), default=0.0)
    return next(((scale, name) for scale, name in FLOP_UNITS if largest >= scale), (1.0, "FLOPs"))


_number = sweep_report._number  # 4 significant digits, "n/a" for None


def metric_cell(summary: dict[str, Any] | None) -> str:
    """``mean ± std`` of a final metric, ``value (n=1)`` with one seed, ``n/a`` without a value."""
    if summary is None:
        return "n/a"
    if summary["std"] is None:
        return f"{_number(summary['mean'])} (n=1)"
    return f"{_number(summary['mean'])} ± {_number(summary['std'])}"


def steps_cell(steps: list[list[int]]) -> str:
    """Steps per stage joined by `` + ``; a stage whose seeds ran different counts shows ``min–max``."""
    return " + ".join(str(s[0]) if len(set(s)) == 1 else f"{min(s)}–{max(s)}" for s in steps)


def table_header(unit: str, metrics: list[str]) -> list[str]:
    return [
        "arm",
        "method",
        "seeds (n)",
        "params",
        "train GFLOPs/clip",
        f"train {unit}",
        "steps per stage",
        "train time (mean)",
        "sample GFLOPs/video",
        "sample s/video",
        "peak memory MiB (kind)",
        *metrics,
    ]


def table_row(arm: dict[str, Any], scale: float, metrics: list[str]) -> list[str]:
    memory = "n/a" if arm["peak_memory_mib"] is None else f"{arm['peak_memory_mib']:.1f}"
    if arm["peak_memory_kind"]:
        memory += f" ({arm['peak_memory_kind']})"
    return [
        arm["arm"],
        arm["method"],
        f"{', '.join(str(s) for s in arm['seeds'])} ({arm['n']})",
        "n/a" if arm["params"] is None else f"{round(arm['params']):,}",
        _number(arm["train_gflops_per_clip"]),
        _number(None if arm["train_flops"] is None else arm["train_flops"] / scale),
        steps_cell(arm["stage_steps"]),
        sweep_report._minutes(arm["train_seconds"]),
        _number(arm["sample_gflops_per_video"]),
        _number(arm["sample_seconds_per_video"]),
        memory,
        *(metric_cell(arm["metrics"].get(m)) for m in metrics),
    ]


def describe_budget(budget: dict[str, Any] | None) -> str:
    """``equal training compute: 4.32e+12 FLOPs`` and the like, from a costs.json budget."""
    if not budget:
        return "not recorded"
    kinds = {"steps": "equal training steps", "compute": "equal training compute", "wall": "equal wall-clock"}
    amounts = []
    if budget.get("steps") is not None:
        amounts.append(f"{budget['steps']} steps")
    if budget.get("train_flops") is not None:
        amounts.append(f"{float(budget['train_flops']):.4g} training FLOPs")
    if budget.get("seconds") is not None:
        amounts.append(f"{float(budget['seconds']):g} s")
    kind = kinds.get(str(budget.get("kind")), str(budget.get("kind")))
    return f"{kind}: {', '.join(amounts)}" if amounts else kind


def budget_lines(arms: list[dict[str, Any]], scale: float, unit: str) -> list[str]:
    """The budget (one for all arms, or each arm's) and whether the arms' total training FLOPs agree."""
    budgets = {json.dumps(b, sort_keys=True): b for a in arms for b in a["budgets"]}
    if len(budgets) == 1:
        line = f"Budget: {describe_budget(next(iter(budgets.values())))}, the same for every arm."
    else:
        each = "; ".join(f"{a['arm']}: {' | '.join(describe_budget(b) for b in a['budgets'])}" for a in arms)
        line = f"Budgets differ between the arms: {each}."
    totals = [a["train_flops"] for a in arms if a["train_flops"] is not None]
    if not totals:
        return [line, "Total training FLOPs: not recorded."]
    ratio = max(totals) / min(totals) - 1 if min(totals) > 0 else math.inf
    verdict = (
        f"agree within {ratio:.1%} (within {FLOPS_AGREEMENT:.0%})"
        if ratio <= FLOPS_AGREEMENT
        else f"differ by {ratio:.1%} (more than {FLOPS_AGREEMENT:.0%}: not an equal-compute comparison)"
    )
    return [
        line,
        f"Total training FLOPs per arm (mean over seeds): {_number(min(totals) / scale)} to "
        f"{_number(max(totals) / scale)} {unit}; they {verdict}.",
    ]


def convention_line(arms: list[dict[str, Any]], conventions: list[str]) -> str:
    """What the FLOP columns count: ``conventions`` (the jobs' ``flop_convention``, when costs.json has one),
    else vidgen.benchmark's counting convention in words (importing it would import torch)."""
    samplers = sorted({s for a in arms for s in a["samplers"]})
    calls = sorted({c for a in arms for c in a["model_calls"]})
    counted = "; ".join(conventions) or (
        "vidgen.benchmark's sampling_flops / training_flops: torch FlopCounterMode, matrix products "
        "(attention included), 1 multiply-accumulate = 2 FLOPs, element-wise work not counted"
    )
    return (
        f"FLOPs as each job wrote them in costs.json ({counted}). Training FLOPs per clip: what one optimizer "
        "step spends on one clip (frozen encoders' forward, trained networks' forward and backward), summed "
        "over the training stages (CMD: autoencoder + diffusion); total: every stage's steps x batch x its "
        "FLOPs per clip. Sampling FLOPs and seconds per video: one video through every sampling chain and "
        f"decoder (sampler: {', '.join(samplers) or 'not recorded'}; model calls: "
        f"{', '.join(map(str, calls)) or 'not recorded'}). The budget plot's x: the earlier stages' FLOPs + "
        "the last stage's step x its FLOPs per step."
    )


def separation_line(result: dict[str, Any], arms: dict[str, dict[str, Any]]) -> str:
    """One "Within seed noise" item: the ordering and the pairs the seeds do not separate."""
    metric = result["metric"]
    direction = "lower is better" if result["lower_is_better"] else "higher is better"
    ordered = ", ".join(f"{name} {metric_cell(arms[name]['metrics'][metric])}" for name in result["order"])
    line = f"- `{metric}` ({direction}), best → worst: {ordered}."
    if result["not_separated"]:
        pairs = "; ".join(
            f"{p['arms'][0]} and {p['arms'][1]} (|Δ| {_number(p['difference'])} <= {_number(p['std_sum'])})"
            for p in result["not_separated"]
        )
        line += f" Not separated (means differ by no more than the sum of their stds): {pairs}."
    elif len(result["order"]) > 1 and not result.get("single_seed"):
        line += " Every pair is separated by more than the sum of its stds."
    if result.get("single_seed"):
        line += (
            f" One seed only ({', '.join(result['single_seed'])}): its seed noise is unknown, so its place in the"
            " order is not a ranking."
        )
    if result["no_value"]:
        line += f" No value: {', '.join(result['no_value'])}."
    return line


def left_out_lines(left_out: list[dict[str, Any]], total: int) -> list[str]:
    if not left_out:
        return [f"Jobs: {total}, all complete."]
    listed = "; ".join(f"{e['job']} (no {' and no '.join(e['missing'])})" for e in left_out)
    return [f"Jobs: {total}; left out: {len(left_out)} of {total}: {listed}."]


def markdown(report: dict[str, Any]) -> str:
    """report.md: the table, the budget, the FLOP convention, the seed-noise statements and the plots."""
    lines = [
        f"# Method comparison: {report['multirun_name']}",
        "",
        f"Multirun folder: `{report['multirun']}`. One row per arm (mean over seeds); metrics: the last "
        f"evaluation of each job (`{HISTORY_FILE}`), mean ± sample std over seeds; params: trainable "
        "parameters of every stage; peak memory: the largest over seeds.",
        "",
        *sweep_report.table_lines(report["table"]["header"], report["table"]["rows"]),
        "",
        *(text for line in report["budget_lines"] for text in (line, "")),
        report["flop_convention"],
        "",
        *left_out_lines(report["left_out"], report["jobs_total"]),
        "",
        "## Within seed noise",
        "",
        *report["separation_lines"],
    ]
    if report["metric"] is not None:
        metric = report["metric"]
        lines += [
            "",
            f"![{metric} against training FLOPs](report_budget.png)",
            "",
            f"![final {metric} against sampling GFLOPs per video](report_pareto.png)",
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ report
def build_report(multirun: Path, metric: str | None = None, allow_missing: bool = False) -> dict[str, Any]:
    """Every number of the report (what report.json holds)."""
    multirun = Path(multirun)
    jobs, left_out = collect_jobs(multirun, allow_missing)
    metric = sweep_report.choose_metric(jobs, metric)
    metrics = sweep_report.metric_columns(jobs, metric)
    groups = list(group_arms(jobs).values())
    arms = [summarize_arm(group, metrics) for group in groups]
    for arm, group in zip(arms, groups, strict=True):
        arm["curve"] = arm_curve(group, metric) if metric is not None else []
    pareto = pareto_arms(arms, metric) if metric is not None else []
    for arm in arms:
        arm["pareto_optimal"] = arm["arm"] in pareto
    scale, unit = flops_unit(a["train_flops"] for a in arms)
    separations = [separation(arms, m) for m in metrics]
    return {
        "multirun": str(multirun),
        "multirun_name": multirun.name,
        "metric": metric,
        "metrics": metrics,
        "flops_unit": unit,
        "flops_scale": scale,
        "jobs_total": len(jobs) + len(left_out),
        "left_out": left_out,
        "table": {
            "header": table_header(unit, metrics),
            "rows": [table_row(a, scale, metrics) for a in arms],
        },
        "budget_lines": budget_lines(arms, scale, unit),
        "flop_convention": convention_line(
            arms,
            list(
                dict.fromkeys(
                    str(j["costs"]["flop_convention"]) for j in jobs if j["costs"].get("flop_convention")
                )
            ),
        ),
        "separation": separations,
        "separation_lines": [separation_line(s, {a["arm"]: a for a in arms}) for s in separations],
        "pareto": pareto,
        "arms": arms,
    }


# ------------------------------------------------------------------------------------------------ plots
def _figure() -> tuple[Any, Any, Callable[[Any, Path], None]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(figure: Any, path: Path) -> None:
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    return figure, axes, save


def plot_budget(report: dict[str, Any], path: Path, title: str) -> None:
    """The chosen metric against training FLOPs: per arm the mean over seeds and a min-max band."""
    metric, unit, scale = report["metric"], report["flops_unit"], report["flops_scale"]
    figure, axes, save = _figure()
    for arm in report["arms"]:
        if not arm["curve"]:
            continue
        x = [p["train_flops"] / scale for p in arm["curve"]]
        (line,) = axes.plot(x, [p["mean"] for p in arm["curve"]], marker="o", label=arm["arm"])
        low, high = [p["min"] for p in arm["curve"]], [p["max"] for p in arm["curve"]]
        axes.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xlabel(f"training {unit}")
    axes.set_ylabel(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    axes.set_title(f"{title}: {metric} against training compute (band: min-max over seeds)", fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    save(figure, path)


def plot_pareto(report: dict[str, Any], path: Path, title: str) -> None:
    """The final chosen metric (mean, std bars) against sampling GFLOPs per video; the Pareto front joined."""
    metric = report["metric"]
    arms = with_cost_and_value(report["arms"], metric)
    figure, axes, save = _figure()
    for arm in arms:
        summary = arm["metrics"][metric]
        x, y = arm["sample_gflops_per_video"], summary["mean"]
        axes.errorbar(x, y, yerr=summary["std"] or 0.0, marker="o", capsize=4, label=arm["arm"])
        seconds = arm["sample_seconds_per_video"]
        note = arm["arm"] if seconds is None else f"{arm['arm']}\n{seconds:.3g} s/video"
        axes.annotate(note, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    front = [a for name in report["pareto"] for a in arms if a["arm"] == name]
    if front:
        axes.plot(
            [a["sample_gflops_per_video"] for a in front],
            [a["metrics"][metric]["mean"] for a in front],
            color="black",
            linestyle="--",
            linewidth=1,
            marker="s" if len(front) == 1 else None,
            markerfacecolor="none",
            markersize=12,
            label="Pareto front",
        )
    if arms and all(a["sample_gflops_per_video"] > 0 for a in arms):
        from matplotlib.ticker import NullFormatter

        axes.set_xscale("log")
        axes.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels overlap
    axes.margins(x=0.15, y=0.1)  # room for the labels
    axes.set_xlabel("sampling GFLOPs per video")
    axes.set_ylabel(f"final {metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    axes.set_title(f"{title}: quality against sampling cost (bars: std over seeds)", fontsize=9)
    axes.grid(True, alpha=0.3, which="both")
    axes.legend(fontsize=8)
    save(figure, path)


def write_report(
    multirun: Path, metric: str | None = None, output_dir: Path | None = None, allow_missing: bool = False
) -> dict[str, Path]:
    """Write report.md, report.json and (when there is a metric) the two PNGs; return the paths by kind."""
    multirun = Path(multirun)
    report = build_report(multirun, metric, allow_missing)
    out = Path(output_dir) if output_dir is not None else multirun
    out.mkdir(parents=True, exist_ok=True)
    written = {"markdown": out / "report.md", "json": out / "report.json"}
    written["markdown"].write_text(markdown(report))
    written["json"].write_text(json.dumps(report, indent=2))
    if report["metric"] is not None:
        title = sweep_report._task_name(multirun) or multirun.name
        written["budget_png"] = out / "report_budget.png"
        written["pareto_png"] = out / "report_pareto.png"
        plot_budget(report, written["budget_png"], title)
        plot_pareto(report, written["pareto_png"], title)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("multirun", type=Path, help="the multirun folder (holds one folder per job)")
    parser.add_argument("--metric", default=None, help="metric of the plots and the first metric column")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: the multirun folder")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="report the complete jobs and list those without costs.json or evaluations",
    )
    args = parser.parse_args(argv)
    if not args.multirun.is_dir():
        parser.error(f"{args.multirun} is not a folder")
    written = write_report(args.multirun, args.metric, args.output_dir, args.allow_missing)
    print(written["markdown"].read_text())
    print("Wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
