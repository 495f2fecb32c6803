"""Heavier check (`make test-slow`): the default CPU recipe learns the synthetic data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import compose_config
from vidgen.lit.training import train


@pytest.mark.slow
def test_default_recipe_learns_the_synthetic_data(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        "trainer.max_steps=300",
        "trainer.val_check_interval=100",
        "trainer.limit_val_batches=2",
        "callbacks.model_checkpoint.every_n_train_steps=300",
        "logger=csv",
        "samples.num_videos=0",
        "samples.final_num_videos=2",
        "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar",
    ]
    summary = train(compose_config(overrides, run_dir=run_dir))
    with open(run_dir / "csv" / "metrics.csv") as handle:
        mse = [float(row["val/mse"]) for row in csv.DictReader(handle) if row.get("val/mse")]
    # the model's zero output at initialisation gives a v-MSE of about 1; after 300 steps it is far lower
    assert len(mse) == 3 and mse[-1] < mse[0]
    assert mse[-1] < 0.25, f"validation v-MSE after 300 steps: {mse}"
    assert len(list(Path(summary["samples"]).glob("sample_*.mp4"))) == 2
