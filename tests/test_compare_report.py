"""experiments/compare/report.py on a fabricated multirun folder (3 arms x 2 seeds, interleaved job order; CMD
with an autoencoder and a diffusion stage): the Markdown table's rows and columns, means and sample stds over
seeds, the budget curve's FLOPs (with the CMD stage offset), the seed-noise statements, the Pareto front, the
PNGs, report.json and the errors for incomplete jobs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import yaml

from tests.experiment_scripts import load_script

MIB = 2**20
BUDGET = {"kind": "compute", "steps": None, "train_flops": 4.32e12, "seconds": None}
# per arm: method, stages (name, steps, batch, flops per clip, params, seconds per seed), sampling FLOPs,
# sampling seconds per seed, peak memory MiB per seed, and the final metrics per seed
ARMS: dict[str, dict[str, Any]] = {
    "latte": {
        "method": "Latte",
        "stages": [("diffusion", 750, 16, 3.6e8, 1_000_000, (100.0, 116.0))],
        "sample_flops": 5e10,
        "sample_seconds": (2.0, 2.2),
        "memory_mib": (100, 110),
        "fvd": (40.0, 44.0),
        "trackable": (0.5, 0.52),
    },
    "cmd": {
        "method": "CMD (autoencoder + content + motion)",
        "stages": [
            ("autoencoder", 150, 16, 1e9, 300_000, (40.0, 45.0)),
            ("diffusion", 600, 16, 2e8, 500_000, (50.0, 57.0)),
        ],
        "sample_flops": 5e9,
        "sample_seconds": (0.25, 0.25),
        "memory_mib": (64, 64),
        "fvd": (60.0, 62.0),
        "trackable": (0.8, 0.82),
    },
    "vdm": {
        "method": "VDM",
        "stages": [("diffusion", 500, 16, 5.4e8, 2_000_000, (200.0, 220.0))],
        "sample_flops": 2e11,
        "sample_seconds": (8.0, 8.0),
        "memory_mib": (300, 320),
        "fvd": (43.0, 47.0),
        "trackable": (0.3, 0.31),
    },
}
HEADER = [
    "arm",
    "method",
    "seeds (n)",
    "params",
    "train GFLOPs/clip",
    "train TFLOPs",
    "steps per stage",
    "train time (mean)",
    "sample GFLOPs/video",
    "sample s/video",
    "peak memory MiB (kind)",
    "synthetic_fvd",
    "synthetic_structure/trackable",
]


def _costs(arm: str, seed: int) -> dict[str, Any]:
    """costs.json of one job, following the contract of the module docstring."""
    spec, stages, offset = ARMS[arm], [], 0.0
    for name, steps, batch, per_clip, params, seconds in spec["stages"]:
        per_step = per_clip * batch
        stages.append(
            {
                "name": name,
                "steps": steps,
                "batch_size": batch,
                "params": params,
                "flops_per_clip": per_clip,
                "flops_per_step": per_step,
                "flops_offset": offset,
                "train_flops": steps * per_step,
                "train_seconds": seconds[seed],
            }
        )
        offset += steps * per_step
    return {
        "arm": arm,
        "method": spec["method"],
        "seed": seed,
        "budget": BUDGET,
        "params": sum(s["params"] for s in stages),
        "stages": stages,
        "train_flops_per_clip": sum(s["flops_per_clip"] for s in stages),
        "train_flops": offset,
        "train_seconds": sum(s["train_seconds"] for s in stages),
        "sample_flops_per_video": spec["sample_flops"],
        "sample_seconds_per_video": spec["sample_seconds"][seed],
        "sampler": "ddim 50 steps",
        "model_calls": 50,
        "peak_memory_bytes": spec["memory_mib"][seed] * MIB,
        "peak_memory_kind": "process RSS",
    }


def _history(arm: str, seed: int) -> list[dict[str, Any]]:
    """Two evaluations (half way, at the end) of the last stage; the end one written twice for seed 1."""
    steps = ARMS[arm]["stages"][-1][1]
    fvd, trackable = ARMS[arm]["fvd"][seed], ARMS[arm]["trackable"][seed]
    rows = [
        {"step": steps // 2, "metrics": {"synthetic_fvd": 2 * fvd, "synthetic_structure/trackable": 0.1}},
        {"step": steps, "metrics": {"synthetic_fvd": fvd, "synthetic_structure/trackable": trackable}},
    ]
    if seed == 1:  # a resumed run wrote the last step twice: the later row counts
        rows.insert(
            1, {"step": steps, "metrics": {"synthetic_fvd": 999.0, "synthetic_structure/trackable": 0}}
        )
    return rows


@pytest.fixture
def multirun(tmp_path: Path) -> Path:
    """Jobs 0-5 = seed 0 of latte, cmd, vdm, then seed 1 of each (``seed=0,1 arm=latte,cmd,vdm``)."""
    root = tmp_path / "compare_methods" / "multiruns" / "tiny"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text(yaml.safe_dump({"task_name": "compare_methods"}))
    for number, (seed, arm) in enumerate((s, a) for s in (0, 1) for a in ARMS):
        job = root / str(number)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={seed}", f"arm={arm}"]))
        (job / "config_resolved.yaml").write_text(yaml.safe_dump({"seed": seed, "compare": {"arm": arm}}))
        (job / "metrics_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _history(arm, seed)))
        (job / "costs.json").write_text(json.dumps(_costs(arm, seed)))
    return root


def _table(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the report's Markdown table."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert set("".join(cells[1])) == {"-"}
    return cells[0], cells[2:]


def test_table_rows_columns_and_statements(multirun: Path) -> None:
    report = load_script("compare", "report")
    assert report.main([str(multirun)]) == 0
    text = (multirun / "report.md").read_text()
    header, rows = _table(text)
    assert header == HEADER
    assert rows == [
        row.split(" | ")
        for row in (
            "latte | Latte | 0, 1 (2) | 1,000,000 | 0.36 | 4.32 | 750 | 1.8 min | 50 | 2.1 | 110.0 (process RSS)"
            " | 42 ± 2.828 | 0.51 ± 0.01414",
            "cmd | CMD (autoencoder + content + motion) | 0, 1 (2) | 800,000 | 1.2 | 4.32 | 150 + 600 | 1.6 min"
            " | 5 | 0.25 | 64.0 (process RSS) | 61 ± 1.414 | 0.81 ± 0.01414",
            "vdm | VDM | 0, 1 (2) | 2,000,000 | 0.54 | 4.32 | 500 | 3.5 min | 200 | 8 | 320.0 (process RSS)"
            " | 45 ± 2.828 | 0.305 ± 0.007071",
        )
    ]
    assert "Budget: equal training compute: 4.32e+12 training FLOPs, the same for every arm." in text
    assert "4.32 to 4.32 TFLOPs; they agree within 0.0% (within 5%)." in text
    assert "1 multiply-accumulate = 2 FLOPs" in text and "sampler: ddim 50 steps; model calls: 50" in text
    assert "Jobs: 6, all complete." in text
    # latte and vdm overlap (|42 - 45| = 3 < 2 x 2.828); cmd is far from both
    assert (
        "- `synthetic_fvd` (lower is better), best → worst: latte 42 ± 2.828, vdm 45 ± 2.828, cmd 61 ± 1.414. "
        "Not separated (means differ by no more than the sum of their stds): latte and vdm (|Δ| 3 <= 5.657)."
    ) in text
    assert (
        "- `synthetic_structure/trackable` (higher is better), best → worst: cmd 0.81 ± 0.01414, "
        "latte 0.51 ± 0.01414, vdm 0.305 ± 0.007071. Every pair is separated by more than the sum of its stds."
    ) in text
    assert "](report_budget.png)" in text and "](report_pareto.png)" in text


def test_means_stds_curves_pareto_and_json(multirun: Path, tmp_path: Path) -> None:
    report = load_script("compare", "report")
    out = tmp_path / "out"
    written = report.write_report(multirun, output_dir=out)
    assert not (multirun / "report.md").exists()
    data = json.loads(written["json"].read_text())
    assert data == report.build_report(multirun)  # round trip
    assert data["metric"] == "synthetic_fvd" and data["flops_unit"] == "TFLOPs"
    arms = {a["arm"]: a for a in data["arms"]}
    assert list(arms) == ["latte", "cmd", "vdm"]
    for name, spec in ARMS.items():
        arm = arms[name]
        assert arm["seeds"] == [0, 1] and arm["n"] == 2
        for metric, key in (("synthetic_fvd", "fvd"), ("synthetic_structure/trackable", "trackable")):
            summary = arm["metrics"][metric]
            assert summary["values"] == list(spec[key])
            assert summary["mean"] == pytest.approx(statistics.fmean(spec[key]), abs=1e-9)
            a, b = spec[key]
            assert summary["std"] == pytest.approx(abs(a - b) / math.sqrt(2), abs=1e-9)  # ddof=1
        total = sum(s[1] * s[2] * s[3] for s in spec["stages"])
        assert arm["train_flops"] == pytest.approx(total, rel=1e-12)
        assert arm["train_seconds"] == pytest.approx(
            statistics.fmean(map(sum, zip(*(s[5] for s in spec["stages"]))))
        )
        assert arm["sample_seconds_per_video"] == pytest.approx(statistics.fmean(spec["sample_seconds"]))
        assert arm["per_seed"]["peak_memory_bytes"] == [m * MIB for m in spec["memory_mib"]]
    assert arms["cmd"]["stage_names"] == ["autoencoder", "diffusion"]
    assert arms["cmd"]["stage_steps"] == [[150, 150], [600, 600]]

    # the budget curve: x = the autoencoder's 150 x 16 x 1e9 FLOPs + diffusion step x 16 x 2e8
    cmd_curve = arms["cmd"]["curve"]
    assert [p["step"] for p in cmd_curve] == [300, 600]
    assert [p["train_flops"] for p in cmd_curve] == pytest.approx(
        [2.4e12 + 300 * 3.2e9, 2.4e12 + 600 * 3.2e9], rel=1e-12
    )
    assert [(p["mean"], p["min"], p["max"], p["n"]) for p in cmd_curve] == [
        (122.0, 120.0, 124.0, 2),
        (61.0, 60.0, 62.0, 2),
    ]
    assert [p["train_flops"] for p in arms["latte"]["curve"]] == pytest.approx([375 * 5.76e9, 750 * 5.76e9])

    # cheapest sampler (cmd) and the best FVD (latte) are on the front; vdm costs more and is worse than latte
    assert data["pareto"] == ["cmd", "latte"]
    assert [a["pareto_optimal"] for a in data["arms"]] == [True, True, False]
    fvd = data["separation"][0]
    assert fvd["order"] == ["latte", "vdm", "cmd"]
    assert [p["arms"] for p in fvd["not_separated"]] == [["latte", "vdm"]]
    assert data["separation"][1]["not_separated"] == []

    for key in ("budget_png", "pareto_png"):
        path = written[key]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100 and float(image.std()) > 0.01


def test_metric_choice_and_flops_disagreement(multirun: Path, tmp_path: Path) -> None:
    report = load_script("compare", "report")
    costs = json.loads((multirun / "5" / "costs.json").read_text())
    costs["train_flops"] = 5.4e12  # vdm seed 1 ran past the budget: its mean is 4.86 TFLOPs
    (multirun / "5" / "costs.json").write_text(json.dumps(costs))
    data = report.build_report(multirun, metric="synthetic_structure/trackable")
    assert data["metric"] == "synthetic_structure/trackable"
    assert data["table"]["header"][11:] == ["synthetic_structure/trackable", "synthetic_fvd"]
    assert data["pareto"] == ["cmd"]  # the cheapest is also the best on this metric
    assert data["budget_lines"][1] == (
        "Total training FLOPs per arm (mean over seeds): 4.32 to 4.86 TFLOPs; they differ by 12.5% "
        "(more than 5%: not an equal-compute comparison)."
    )
    with pytest.raises(SystemExit, match="no_such_metric"):
        report.build_report(multirun, metric="no_such_metric")


def test_incomplete_jobs_stop_the_report_or_are_listed(multirun: Path) -> None:
    report = load_script("compare", "report")
    (multirun / "3" / "costs.json").unlink()
    (multirun / "4" / "metrics_history.jsonl").write_text("")
    with pytest.raises(SystemExit) as error:
        report.write_report(multirun)
    message = str(error.value)
    assert f"{multirun / '3'}: no costs.json" in message
    assert f"{multirun / '4'}: no metrics_history.jsonl (no evaluations)" in message
    assert "2 of 6 jobs" in message and not (multirun / "report.md").exists()

    assert report.main([str(multirun), "--allow-missing"]) == 0
    text = (multirun / "report.md").read_text()
    assert "left out: 2 of 6: 3 (no costs.json); 4 (no metrics_history.jsonl (no evaluations))." in text
    _, rows = _table(text)
    assert [row[:3] for row in rows] == [
        ["latte", "Latte", "0 (1)"],
        ["cmd", "CMD (autoencoder + content + motion)", "0 (1)"],
        ["vdm", "VDM", "0, 1 (2)"],
    ]
    assert rows[0][11:] == ["40 (n=1)", "0.5 (n=1)"]


def test_a_broken_costs_file_is_named(multirun: Path) -> None:
    report = load_script("compare", "report")
    costs = json.loads((multirun / "1" / "costs.json").read_text())
    del costs["stages"][0]["flops_offset"], costs["sample_flops_per_video"]
    (multirun / "1" / "costs.json").write_text(json.dumps(costs))
    with pytest.raises(
        SystemExit, match=r"1/costs.json lacks sample_flops_per_video, stages\[0\].flops_offset"
    ):
        report.build_report(multirun)


def test_wall_budget_uneven_steps_unknown_seconds_and_own_convention(multirun: Path) -> None:
    """A wall-clock budget: the seeds may run different step counts; costs.json may lack the sampling time
    (None) and may state its FLOP convention (``flop_convention``, optional)."""
    report = load_script("compare", "report")
    for number in range(6):
        path = multirun / str(number) / "costs.json"
        costs = json.loads(path.read_text())
        costs["budget"] = {"kind": "wall", "steps": None, "train_flops": None, "seconds": 600.0}
        costs["flop_convention"] = "counted by hand"
        if costs["arm"] == "vdm":
            costs["sample_seconds_per_video"] = None
        if costs["arm"] == "cmd" and costs["seed"] == 1:
            costs["stages"][1]["steps"] = 580
        path.write_text(json.dumps(costs))
    written = report.write_report(multirun)
    text = written["markdown"].read_text()
    _, rows = _table(text)
    assert [(row[0], row[6], row[9]) for row in rows] == [
        ("latte", "750", "2.1"),
        ("cmd", "150 + 580–600", "0.25"),
        ("vdm", "500", "n/a"),
    ]
    assert "Budget: equal wall-clock: 600 s, the same for every arm." in text
    assert "FLOPs as each job wrote them in costs.json (counted by hand)." in text
    assert json.loads(written["json"].read_text())["pareto"] == ["cmd", "latte"]
    assert written["pareto_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
