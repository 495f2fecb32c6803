"""Measuring several model configs side by side (``python -m vidgen.bench 'bench.compare=[a,b]'``): each
listed ``conf/model/<name>.yaml`` composed with the command's other overrides (the same data, video shape,
autoencoder, conditioner, recipe and sampler), measured with :func:`~vidgen.benchmark.measure.run_bench` one
after the other, and reported as one table with a column per model and first / other ratio columns.
"""

from __future__ import annotations

import gc
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig

from vidgen.benchmark.measure import flops_setting, guidance_note, run_bench, tflops
from vidgen.benchmark.memory import CUDA_PEAK, RSS_PEAK, RSS_SINCE_START
from vidgen.benchmark.sampling_flops import STAGE_LABELS
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR

__all__ = ["COMPARED", "compose_compared_configs", "format_comparison", "run_comparison"]


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


#: measurements compared as first / other; peak memory only where it is per model (CUDA, or a resettable RSS)
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
        <other>": {key: first / other}}}`` for the keys of :data:`COMPARED` (peak memory only where it is each
        model's own: the CUDA peak, or the process peak RSS where Linux can reset it).
    """
    results = []
    for name, cfg in zip(names, configs, strict=True):
        results.append({"config": name, **run_bench(cfg)})
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    first = results[0]
    per_model = all(result["peak_memory_kind"] in (CUDA_PEAK, RSS_PEAK) for result in results)
    keys = [key for key, _ in COMPARED if per_model or key not in _MEMORY_KEYS]
    ratios = {
        f"{first['config']} / {other['config']}": {
            **{key: first[key] / other[key] for key in keys if first[key] is not None and other[key]},
            **_flops_ratios(first, other),
        }
        for other in results[1:]
    }
    return {"compare": list(names), "results": results, "ratios": ratios}


def _flops_values(result: dict[str, Any]) -> dict[str, int]:
    """``{"sampling_flops": total, "sampling_flops/<stage>": stage FLOPs}`` of a result counted with
    ``bench.flops`` ({} otherwise)."""
    flops = result.get("sampling_flops")
    if not flops:
        return {}
    stages = {f"sampling_flops/{name}": stage["flops"] for name, stage in flops["stages"].items()}
    return {"sampling_flops": flops["total_flops"], **stages}


def _flops_ratios(first: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """first / other of every FLOP count both have (a stage with 0 FLOPs in ``other`` has no ratio)."""
    mine, theirs = _flops_values(first), _flops_values(other)
    return {key: mine[key] / theirs[key] for key in mine if theirs.get(key)}


def _cell(key: str, value: float | None) -> str:
    if value is None:
        return "not measured"
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
    counted = any(r.get("sampling_flops") for r in results)
    if counted:
        rows += _flops_rows(report)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    first = results[0]
    where = (
        f"{first['device']} ({first['threads']} threads), {first['precision']}; batch {first['batch_size']}; "
    )
    if first["train_clips_per_s"] is None:
        where = ""
    notes = [
        f"video / latent shape {tuple(first['video_shape'])} / {tuple(first['latent_shape'])}; "
        f"{where}{first['sampler']}, {guidance_note(first)}",
    ]
    notes.append("ratio = first / other: throughput above 1 or time below 1 means the first is faster")
    if first["train_clips_per_s"] is None:
        notes.append("bench.time=false: training, sampling time and memory not measured")
    elif any(result["peak_memory_kind"] == RSS_SINCE_START for result in report["results"]):
        notes.append("peak memory is the process peak RSS, shared by all models in this run: no ratio")
    elif first["peak_memory_kind"] == RSS_PEAK:
        notes.append("peak memory: the process's peak RSS of each model's own phase (reset between models)")
    if counted:
        notes += _flops_notes(results)
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])


def _flops_rows(report: dict[str, Any]) -> list[list[str]]:
    """Rows "sampling TFLOPs / video", "sampling TMACs / video" and one per stage any model has (in
    :data:`STAGE_LABELS` order): a cell per model ('-': not counted / no such stage), then the ratios."""
    values = [_flops_values(r) for r in report["results"]]
    stages = [name for name in STAGE_LABELS if any(f"sampling_flops/{name}" in v for v in values)]
    spec = [
        ("sampling_flops", "sampling TFLOPs / video", 1.0),
        ("sampling_flops", "sampling TMACs / video", 0.5),  # MACs = FLOPs / 2: the same ratio
        *((f"sampling_flops/{name}", f"  {STAGE_LABELS[name]} (TFLOPs)", 1.0) for name in stages),
    ]
    rows = []
    for key, label, scale in spec:
        cells = [tflops(v[key] * scale) if key in v else "-" for v in values]
        ratios = [f"{ratio[key]:.3f}" if key in ratio else "n/a" for ratio in report["ratios"].values()]
        rows.append([label, *cells, *ratios])
    return rows


def _flops_notes(results: list[dict[str, Any]]) -> list[str]:
    """The FLOP rows' convention, the sampler each model was counted with, and every substitution note (with
    the models it applies to)."""
    counted = [r for r in results if r.get("sampling_flops")]
    notes = [
        "sampling FLOPs per video: " + counted[0]["sampling_flops"]["convention"] + "; FLOPs below 1 in a "
        "ratio means the first costs less; '-' = no such stage"
    ]
    settings: dict[str, list[str]] = {}
    for r in counted:
        settings.setdefault(flops_setting(r["sampling_flops"]), []).append(r["config"])
    notes += [f"counted with {setting} ({', '.join(names)})" for setting, names in settings.items()]
    by_note: dict[str, list[str]] = {}
    for r in counted:
        for note in r["sampling_flops"]["notes"]:
            by_note.setdefault(note, []).append(r["config"])
    notes += [f"{note} ({', '.join(names)})" for note, names in by_note.items()]
    return notes
