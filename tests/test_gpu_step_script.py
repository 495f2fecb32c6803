"""experiments/latte/gpu_step.py, the prepared GPU check of issue 14, run on the CPU at a tiny size: every
requested setting gets a row in order, checkpointing reaches the model, TFLOP/s are the counted step FLOPs over
the median step time, and the device peaks are looked up by name (figures come from a GPU, not from here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.experiment_scripts import load_script

TINY = [
    "model.depth=2",
    "model.hidden_size=32",
    "model.num_heads=2",
    "data.num_frames=4",
    "data.resolution=8",
]


@pytest.fixture(scope="module")
def script():
    return load_script("latte", "gpu_step")


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.4),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("Tesla T4", None),
    ],
)
def test_device_peaks_are_looked_up_by_name(script, name: str, peak: float | None) -> None:
    assert script.device_peak_tflops(name) == peak


def test_achieved_rate_is_flops_over_time(script) -> None:
    assert script.achieved(3 * 10**12, 500.0, 12.0) == (6.0, 0.5)
    assert script.achieved(3 * 10**12, 500.0, None) == (6.0, None)


def test_checkpointing_setting_reaches_the_model(script) -> None:
    cfg = script.compose_step_config("tiny", TINY)
    plain, _ = script._build("vidgen", cfg, None, False)
    checkpointed, arch = script._build("vidgen", cfg, None, True)
    assert not plain.module.model.gradient_checkpointing and checkpointed.module.model.gradient_checkpointing
    assert (arch.depth, arch.hidden_size, arch.patch_size, arch.num_frames) == (2, 32, 2, 4)
    # FLOPs are the model's (no recomputation), and counting leaves checkpointing on
    inputs = script.StepInputs.random(arch, 2, 1000, 0)
    assert script.model_step_flops(checkpointed, inputs) == script.model_step_flops(plain, inputs)
    assert checkpointed.module.model.gradient_checkpointing


def test_cpu_run_reports_every_setting(script, tmp_path: Path, capsys) -> None:
    out = tmp_path / "step.json"
    argv = ["--device", "cpu", "--precision", "32-true", "--size", "tiny", "--peers", "diffusers"]
    argv += ["--settings", "plain,checkpointing", "--steps", "2", "--warmup", "1", "--json", str(out), *TINY]
    assert script.main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [row["setting"] for row in rows] == ["vidgen", "vidgen + checkpointing", "diffusers"]
    assert all(row["status"] == "ok" and len(row["step_ms"]) == 2 for row in rows)
    assert [row["checkpointing"] for row in rows] == [False, True, False]
    assert rows[0]["step_flops"] == rows[1]["step_flops"] > 0  # recomputation is not counted
    for row in rows:
        assert row["tflops"] == pytest.approx(row["step_flops"] / (row["median_step_ms"] / 1e3) / 1e12)
        assert row["peak_share"] is None and row["peak_memory_gib"] > 0  # no peak known for a CPU
    assert result["latent"] == [4, 4, 8, 8] and result["precision"] == "32-true"
    table = capsys.readouterr().out
    assert "| setting | step ms (median) | step TFLOPs | TFLOP/s | of peak | peak memory GiB |" in table
    assert "| vidgen + checkpointing |" in table


def test_unknown_settings_and_peers_are_refused(script) -> None:
    with pytest.raises(SystemExit):
        script.parse_args(["--settings", "plain,fast"])
    with pytest.raises(SystemExit):
        script.parse_args(["--peers", "official,xformers"])
