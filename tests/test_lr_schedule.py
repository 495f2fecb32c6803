"""Learning-rate schedules (``optim.schedule``): the factor at each step against the formula, the optimizer
following it step by step, the cosine over a wall-clock budget (``optim.schedule_over``) following the
trainer's Timer, and bad values failing naming their key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.lr_schedule import budget_progress, lr_multiplier, schedule_clock, with_lr_schedule


def test_warmup_is_linear_and_cosine_reaches_the_floor_at_the_last_step() -> None:
    total, warmup, floor = 101, 10, 0.1
    values = [lr_multiplier(s, total, "cosine", warmup, floor) for s in range(total + 5)]
    assert values[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert values[warmup] == pytest.approx(1.0)
    middle = warmup + (total - 1 - warmup) // 2
    assert values[middle] == pytest.approx(
        floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=0.01
    )
    assert values[total - 1] == pytest.approx(floor) and values[-1] == pytest.approx(floor)
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :]))  # never rises after warm-up
    assert [lr_multiplier(s, 50, "constant", 4, 0.0) for s in (0, 3, 4, 49)] == [0.25, 1.0, 1.0, 1.0]


def test_the_optimizer_follows_the_schedule_step_by_step() -> None:
    weight = torch.nn.Parameter(torch.zeros(2))
    optim = {"lr": 2e-3, "schedule": "cosine", "warmup_steps": 2, "min_lr_ratio": 0.0}
    out = with_lr_schedule(torch.optim.AdamW([weight], lr=2e-3), optim, total_steps=6)
    optimizer, scheduler = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [2e-3 * lr_multiplier(s, 6, "cosine", 2, 0.0) for s in range(6)]
    assert seen == pytest.approx(expected) and seen[-1] == pytest.approx(0.0)
    plain = torch.optim.AdamW([weight], lr=1e-3)
    assert with_lr_schedule(plain, {"lr": 1e-3}, total_steps=6) is plain  # constant, no warm-up


@pytest.mark.parametrize(
    ("override", "key"),
    [("optim.schedule=linear", "optim.schedule"), ("optim.warmup_steps=-1", "optim.warmup_steps"),
     ("optim.min_lr_ratio=1.5", "optim.min_lr_ratio"), ("optim.schedule_over=epochs", "optim.schedule_over"),
     # a cosine over the clock needs a clock
     ("trainer.max_time=null optim.schedule_over=time", "optim.schedule_over")],
)  # fmt: skip
def test_bad_schedule_values_fail_naming_the_key(override: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(compose_config(override.split(), run_dir=tmp_path / "run"))


def test_outside_a_fit_the_optimizer_comes_alone(tmp_path: Path) -> None:
    """Benchmarks call ``configure_optimizers`` with no trainer: no run length, so no schedule."""
    from vidgen.lit.build import build_module

    cfg = compose_config(["optim.schedule=cosine", "optim.warmup_steps=3"], run_dir=tmp_path / "run")
    assert isinstance(build_module(cfg).configure_optimizers(), torch.optim.AdamW)


class _Strategy:
    def __init__(self) -> None:
        self.broadcasts = 0

    def broadcast(self, value: float) -> float:
        self.broadcasts += 1
        return value


class _Trainer:
    """What the budget's clock reads of a trainer: its callbacks (a Timer) and its strategy's broadcast."""

    def __init__(self, callbacks: list) -> None:
        self.callbacks, self.strategy = callbacks, _Strategy()


def _timer_at(elapsed: list[float], budget_seconds: float):
    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration={"seconds": budget_seconds})
    timer.time_elapsed = lambda stage=None: elapsed[0]  # the clock, set by the test
    return timer


def test_the_cosine_over_a_wall_clock_budget_follows_the_time_spent_not_the_steps() -> None:
    elapsed = [0.0]
    trainer = _Trainer([_timer_at(elapsed, 300.0)])
    progress = budget_progress(trainer)
    weight = torch.nn.Parameter(torch.zeros(2))
    optim = {"lr": 1e-3, "schedule": "cosine", "schedule_over": "time", "min_lr_ratio": 0.0}
    out = with_lr_schedule(torch.optim.AdamW([weight], lr=1e-3), optim, total_steps=20000, progress=progress)
    optimizer, scheduler = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    seen = {}
    for seconds in (75.0, 150.0, 225.0, 299.0, 300.0, 330.0):  # a few steps, however many the budget holds
        elapsed[0] = seconds
        optimizer.step()
        scheduler.step()
        seen[seconds] = optimizer.param_groups[0]["lr"]
    for seconds, lr in seen.items():
        fraction = min(1.0, seconds / 300.0)
        assert lr == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * fraction)), abs=1e-12), seconds
    assert seen[300.0] == pytest.approx(0.0) and seen[330.0] == pytest.approx(0.0)
    assert trainer.strategy.broadcasts >= 6  # rank 0's clock decides the rate of every rank


def test_the_auto_clock_is_the_budget_when_there_is_one_else_the_steps() -> None:
    from types import SimpleNamespace

    with_budget = SimpleNamespace(_trainer=_Trainer([_timer_at([0.0], 60.0)]))
    without = SimpleNamespace(_trainer=_Trainer([]))
    assert callable(schedule_clock(with_budget, {"schedule_over": "auto"}))
    assert schedule_clock(without, {"schedule_over": "auto"}) is None
    assert schedule_clock(with_budget, {"schedule_over": "steps"}) is None
    with pytest.raises(ValueError, match=r"trainer\.max_time"):
        schedule_clock(without, {"schedule_over": "time"})
