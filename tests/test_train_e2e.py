"""End to end on tiny configs: train -> checkpoint -> resume (exactly) -> sample .mp4s; TensorBoard events."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import TINY, compose_config
from vidgen.io.video import read_video
from vidgen.lit.build import load_module_from_checkpoint, read_checkpoint
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.checkpoints import resolve_ckpt_path
from vidgen.lit.training import train


def _train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train/loss from the CSV logger."""
    losses = {}
    with open(run_dir / "csv" / "metrics.csv") as handle:
        for row in csv.DictReader(handle):
            if row.get("train/loss"):
                losses[int(row["step"])] = float(row["train/loss"])
    return losses


def test_train_checkpoint_sample_and_tensorboard(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    summary = train(compose_config(TINY, run_dir=run_dir))
    assert summary["global_step"] == 6 and not summary["interrupted"]
    # the resolved config, checkpoints and samples live in the run directory
    assert (run_dir / "config_resolved.yaml").is_file()
    assert {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")} >= {"last.ckpt", "step0000003.ckpt"}
    final = sorted((run_dir / "samples" / "final").glob("sample_*.mp4"))
    assert len(final) == 2 and (run_dir / "samples" / "final" / "grid.mp4").is_file()
    frames = read_video(final[0])
    assert (
        frames.shape[0] == 4 and frames.shape[-1] == 3 and frames.dtype == torch.uint8
    ) or frames.dtype.name == "uint8"
    assert list((run_dir / "samples").glob("step_*/sample_000.mp4")), "validation samples were not written"
    # TensorBoard holds loss scalars and a video summary
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert "train/loss" in tags["scalars"] and "val/loss" in tags["scalars"]
    assert "samples" in tags["images"], "no video summary (is moviepy 1.x installed?)"
    assert len(events.Scalars("train/loss")) >= 5
    # checkpoints store the config and no copy of the frozen autoencoder
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["vidgen_config"]["model"]["hidden_size"] == 32
    assert any(k.startswith("ema_denoiser.") for k in checkpoint["state_dict"])


def test_a_wall_clock_budget_stops_the_fit_and_the_final_outputs_follow(tmp_path: Path, capsys) -> None:
    """``trainer.max_time`` (the demo recipe's budget): the fit stops after the first step past the budget,
    not as an interruption, and the last checkpoint and the final samples are those of that step; the
    recipe's cosine over the budget has brought the rate down to 0 by then."""
    run_dir = tmp_path / "run"
    budget = [
        "trainer.max_time=00:00:00:02",
        "trainer.max_steps=100000",
        "optim.schedule=cosine",
        "optim.schedule_over=auto",
        "~callbacks.model_checkpoint",  # no periodic save (which may fall on the last step) to fall back on
    ]
    summary = train(compose_config([*TINY, *budget], run_dir=run_dir))
    assert 6 < summary["global_step"] < 100000 and not summary["interrupted"]
    assert "as many steps as fit in 00:00:00:02 (100000 steps at most)" in capsys.readouterr().out
    checkpoint = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == summary["global_step"]
    assert len(list((run_dir / "samples" / "final").glob("sample_*.mp4"))) == 2
    # over the steps (100000) the rate would still be at its start; over the two seconds it has ended
    assert checkpoint["lr_schedulers"][0]["_last_lr"][0] < 1e-6


def test_resume_continues_the_same_loss_curve_exactly(tmp_path: Path) -> None:
    overrides = [*TINY, "logger=csv", "trainer.val_check_interval=2", "samples.num_videos=0"]
    straight = tmp_path / "straight"
    train(compose_config([*overrides, "trainer.max_steps=6"], run_dir=straight))
    first = tmp_path / "first"
    train(compose_config([*overrides, "trainer.max_steps=3"], run_dir=first))
    resumed = tmp_path / "resumed"
    last = first / "checkpoints" / "last.ckpt"
    train(compose_config([*overrides, "trainer.max_steps=6", f"ckpt_path={last}"], run_dir=resumed))
    reference, head, tail = _train_losses(straight), _train_losses(first), _train_losses(resumed)
    assert sorted(reference) == list(range(6)) and sorted(tail) == [3, 4, 5]
    for step in range(3):
        assert head[step] == reference[step]
    for step in (3, 4, 5):
        assert tail[step] == reference[step], f"step {step}: {tail[step]} != {reference[step]}"
    # EMA weights are restored as well: final EMA tensors equal the uninterrupted run's
    a = read_checkpoint(straight / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(resumed / "checkpoints" / "last.ckpt")["state_dict"]
    for key in a:
        if key.startswith("ema_denoiser."):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_ckpt_path_last_finds_the_newest_run(tmp_path: Path) -> None:
    runs = tmp_path / "train" / "runs"
    older = runs / "a" / "checkpoints"
    newer = runs / "b" / "checkpoints"
    for folder in (older, newer):
        folder.mkdir(parents=True)
        (folder / "last.ckpt").write_bytes(b"x")
    import os

    os.utime(older / "last.ckpt", (1, 1))
    assert resolve_ckpt_path("last", runs / "c", runs) == newer / "last.ckpt"
    assert resolve_ckpt_path("last", runs / "a", runs) == older / "last.ckpt"
    assert resolve_ckpt_path(None, runs / "c", runs) is None


def test_sample_cli_function_writes_videos_and_grid(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(compose_config([*TINY, "trainer.max_steps=2", "samples.final_num_videos=0"], run_dir=run_dir))
    out = tmp_path / "samples"
    cfg = compose_config(
        [
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            "num_videos=3",
            "sampler=ddim",
            "sampler.steps=4",
            f"out_dir={out}",
        ],
        run_dir=tmp_path / "sample_run",
        config_name="sample",
    )
    written = sample(cfg)
    assert [p.name for p in written] == ["sample_000.mp4", "sample_001.mp4", "sample_002.mp4", "grid.mp4"]
    for path in written[:3]:
        frames = read_video(path)
        assert frames.shape[0] == 4  # frames per clip
    module, _ = load_module_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    # the same seed gives the same videos (DDIM eta=0 is deterministic)
    a = module.generate(2, generator=torch.Generator().manual_seed(0), sampler={"name": "ddim", "steps": 3})
    b = module.generate(2, generator=torch.Generator().manual_seed(0), sampler={"name": "ddim", "steps": 3})
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 3, 4, 16, 16) and a.min() >= -1 and a.max() <= 1


def test_nan_loss_stops_with_a_clear_message_and_no_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = compose_config([*TINY, "optim.lr=1e30"], run_dir=run_dir)
    with pytest.raises(Exception, match="not finite"):
        train(cfg)
    assert not (run_dir / "checkpoints" / "last.ckpt").exists()
