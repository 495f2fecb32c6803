"""experiments/latte/report.py on a fabricated multirun folder: arms, parameters (checkpoint first, else the
config's model on the meta device), FLOPs, final metrics (last row of a step wins), training time, the
Markdown table, the JSON and the PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from tests.conftest import TINY_DATA, TINY_MODEL, compose_config
from tests.experiment_scripts import load_script
from vidgen.config.instantiate import instantiate_node
from vidgen.models.latte import Latte, count_flops


def _job(root: Path, number: int, overrides: list[str], rows: list[dict], model: dict | None) -> Path:
    job = root / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if rows:
        (job / "metrics_history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if model is not None:
        (job / "config_resolved.yaml").write_text(
            yaml.safe_dump({"model": model, "task_name": "latte_injection"})
        )
    return job


@pytest.fixture
def multirun(tmp_path: Path) -> dict[str, Any]:
    root = tmp_path / "latte_injection" / "multiruns" / "tiny_2026-01-01_00-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "task_name": "latte_injection",
                "hydra": {"sweeper": {"params": {"model.injection": "adaln,tokens"}}},
            }
        )
    )
    models = {}
    for injection in ("adaln", "tokens"):
        cfg = compose_config(
            [*TINY_MODEL, *TINY_DATA, f"model.injection={injection}"], run_dir=tmp_path / "x"
        )
        models[injection] = OmegaConf.to_container(cfg.model, resolve=True)
    common = ["experiment=latte/injection", "scale=tiny", "trainer.max_steps=500"]
    adaln = _job(
        root,
        0,
        ["model.injection=adaln", *common],
        [
            {
                "step": 250,
                "metrics": {"synthetic_fvd": 80.0, "synthetic_structure/trackable": 0.5},
                "train_seconds": 30.0,
            },
            {
                "step": 500,
                "metrics": {"synthetic_fvd": 40.123456, "synthetic_structure/trackable": 0.75},
                "train_seconds": 90.0,
            },
        ],
        models["adaln"],
    )
    (adaln / "checkpoints").mkdir()
    torch.save({"vidgen_num_denoiser_params": 123456, "state_dict": {}}, adaln / "checkpoints" / "last.ckpt")
    _job(
        root,
        1,
        ["model.injection=tokens", *common],
        [
            {
                "step": 250,
                "metrics": {"synthetic_fvd": 120.0, "synthetic_structure/trackable": 0.25},
                "train_seconds": 20.0,
            },
            {"step": 500, "metrics": {"synthetic_fvd": 99.0, "synthetic_structure/trackable": 0.0}},
            # the same step again (a resumed run): this row counts
            {"step": 500, "metrics": {"synthetic_fvd": 70.5, "synthetic_structure/trackable": float("nan")}},
        ],
        models["tokens"],
    )
    return {"root": root, "models": models}


def _row(text: str, arm: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {arm} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_report_table_values_and_plot(multirun: dict[str, Any]) -> None:
    report = load_script("latte", "report")
    root = multirun["root"]
    assert report.main([str(root)]) == 0
    text = (root / "report.md").read_text()
    header = [
        c.strip()
        for c in next(line for line in text.splitlines() if line.startswith("| arm")).strip("|").split("|")
    ]
    assert header == [
        "arm",
        "params",
        "GFLOPs",
        "step",
        "train time",
        "synthetic_fvd",
        "synthetic_structure/trackable",
    ]

    with torch.device("meta"):
        tokens_model = instantiate_node(multirun["models"]["tokens"])
        adaln_model = instantiate_node(multirun["models"]["adaln"])
    x_shape = (1, 3, 4, 16, 16)
    adaln = _row(text, "model.injection=adaln")
    assert adaln[1] == "123,456"  # the checkpoint's count wins
    assert adaln[2] == f"{count_flops(adaln_model, x_shape) / 1e9:.4g}"
    assert adaln[3:] == ["500", "1.5 min", "40.12", "0.75"]
    tokens = _row(text, "model.injection=tokens")
    assert tokens[1] == f"{tokens_model.num_params():,}"  # no checkpoint: the config's model on meta
    assert tokens[2] == f"{count_flops(tokens_model, x_shape) / 1e9:.4g}"
    assert tokens[3:] == ["500", "20 s", "70.5", "nan"]  # the repeated step's last row
    assert "![synthetic_fvd against training steps](report.png)" in text

    assert (root / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((root / "report.json").read_text())
    assert data["metric"] == "synthetic_fvd"
    assert [a["arm"] for a in data["arms"]] == ["model.injection=adaln", "model.injection=tokens"]
    assert [[r["step"] for r in a["history"]] for a in data["arms"]] == [[250, 500], [250, 500]]


def test_report_metric_choice_output_dir_and_missing_history(
    multirun: dict[str, Any], tmp_path: Path
) -> None:
    report = load_script("latte", "report")
    root = multirun["root"]
    _job(
        root, 2, ["model.injection=none", "experiment=latte/injection"], [], None
    )  # crashed before evaluating
    out = tmp_path / "elsewhere"
    written = report.write_report(root, metric="synthetic_structure/trackable", output_dir=out)
    text = written["markdown"].read_text()
    header = next(line for line in text.splitlines() if line.startswith("| arm"))
    assert header.startswith("| arm | params | GFLOPs | step | train time | synthetic_structure/trackable |")
    assert _row(text, "model.injection=none")[1:] == ["n/a"] * 6
    assert "No evaluations found for: model.injection=none" in text
    assert written["png"] == out / "report.png" and written["png"].is_file()
    assert not (root / "report.md").exists()
    with pytest.raises(SystemExit, match="no_such_metric"):
        report.write_report(root, metric="no_such_metric", output_dir=out)


def test_arm_labels_use_the_varying_overrides_or_the_sweep_keys() -> None:
    report = load_script("latte", "report")
    labels = report.arm_labels(
        [{"model": "latte_v1", "scale": "tiny"}, {"model": "latte_v2", "scale": "tiny"}], ["model"]
    )
    assert labels == ["model=latte_v1", "model=latte_v2"]
    assert report.arm_labels([{"model": "latte_v1", "scale": "tiny"}], ["model"]) == ["model=latte_v1"]
    assert report.arm_labels([{"a": "1"}], []) == ["job 0"]


def test_flops_script_reconciles_the_paper_table3_count() -> None:
    """The paper's Latte-XL "FLOPs" (5572.69) = thop's MACs of the official batch of 3 clips (Linear, Conv,
    LayerNorm modules; vidgen's model: 5482.28 G, the figure thop 0.1.1 itself gives) + the official code's
    adaLN computed per frame / per patch (90.42 G), truncated to two decimals as the paper truncates."""
    flops = load_script("latte", "flops")
    shape = (3, 4, 16, 32, 32)
    with torch.device("meta"):
        model = Latte(size="XL")
    ours, extra = flops.thop_macs(model, shape), flops.official_adaln_extra_macs(model, shape)
    assert ours == 5_482_279_452_672
    h = 1152  # 14 spatial blocks x 45 extra rows, 14 temporal x 765, final layer 45 rows of 2h outputs
    assert extra == 14 * 45 * h * 6 * h + 14 * 765 * h * 6 * h + 45 * h * 2 * h == 90_415_595_520
    assert math.floor((ours + extra) / 1e7) / 100 == flops.PAPER_TABLE3[1][1] == 5572.69
    # the conventions: a linear's MACs are in_features x output elements; attention's products uncounted
    with torch.device("meta"):
        small = Latte(
            size="tiny", depth=1, hidden_size=8, num_heads=2, in_channels=1, input_size=2, num_frames=1
        )
    linear_macs = sum(m.in_features * m.out_features for m in small.modules() if type(m) is torch.nn.Linear)
    # one clip, one frame, one 2x2 patch: one token; the timestep MLP's first layer reads 256 features
    assert flops.thop_macs(small, (1, 1, 1, 2, 2)) == linear_macs + 8 * 1 * 4 + 2 * 8 * 3
