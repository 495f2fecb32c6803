"""The spawn launchers' clean worker exit (vidgen.lit.parallel), checked in this process: the worker body
runs the fit function, hands its result back, destroys the process group, then ends the process with
``os._exit(0)`` (stubbed here: it would end pytest's worker)."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from lightning.pytorch.accelerators import CPUAccelerator

from vidgen.lit.parallel import FSDP2Strategy, SpawnDDPStrategy


def _one_rank_group(tmp_path: Path) -> None:
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)


@pytest.mark.parametrize("strategy_kind", ["ddp", "fsdp"])
def test_worker_destroys_its_process_group_after_the_fit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy_kind: str
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # the launcher leaves threads alone
    monkeypatch.setenv("LOCAL_RANK", "0")
    if strategy_kind == "ddp":
        strategy = SpawnDDPStrategy(accelerator=CPUAccelerator(), parallel_devices=[torch.device("cpu")] * 2)
    else:
        strategy = FSDP2Strategy(launcher="spawn")
        strategy.accelerator = CPUAccelerator()
        strategy.parallel_devices = [torch.device("cpu")] * 2
    strategy._configure_launcher()
    launcher = strategy.launcher
    assert launcher is not None and launcher.is_interactive_compatible is False

    seen: list[bool] = []

    def fit() -> str:
        seen.append(dist.is_initialized())
        dist.barrier()  # a collective in the worker, like the fit's
        return "results"

    exits: list[tuple[int, bool]] = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append((code, dist.is_initialized())))

    _one_rank_group(tmp_path)
    try:
        returned: queue.Queue = queue.Queue()
        launcher._wrapping_function(0, None, fit, (), {}, returned)
        assert seen == [True]
        assert returned.get_nowait() == "results"  # rank 0 handed the fit's result back first
        assert not dist.is_initialized()
        assert exits == [(0, False)]  # one exit, status 0, after the group was destroyed
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_spawn_ddp_always_spawns() -> None:
    strategy = SpawnDDPStrategy(accelerator=CPUAccelerator(), parallel_devices=[torch.device("cpu")] * 2)
    strategy._configure_launcher()
    assert strategy.launcher._start_method == "spawn"
    with pytest.raises(ValueError, match="start_method"):
        SpawnDDPStrategy(start_method="fork")
