"""data.worker_timeout / data.worker_start_method: checked at start, passed to the loaders, and a stuck worker
fails the loader with the key's name instead of hanging it (and is gone afterwards)."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, get_worker_info

from vidgen.config.errors import ConfigError
from vidgen.data.datamodule import SyntheticDataModule
from vidgen.data.loader import ResumableDataLoader
from vidgen.data.worker_options import (
    WatchedDataLoader,
    WorkerTimeoutError,
    checked_start_method,
    checked_worker_timeout,
    worker_loader_kwargs,
)


class StuckInWorkerDataset(Dataset):
    """Item ``i`` is ``tensor(i)``, except that a worker process writes its pid to ``pid_file`` and then
    sleeps ``sleep_s`` on item 0 (the main process never sleeps)."""

    def __init__(self, pid_file: Path, sleep_s: float = 120.0, n: int = 4) -> None:
        self.pid_file, self.sleep_s, self.n = pid_file, sleep_s, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 0 and get_worker_info() is not None:
            self.pid_file.write_text(str(os.getpid()))
            time.sleep(self.sleep_s)
        return torch.tensor(index)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("value", [0, -1, "soon", True, float("inf")])
def test_a_bad_timeout_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.worker_timeout"):
        checked_worker_timeout(value)


@pytest.mark.parametrize("value", ["thread", "Fork", 1])
def test_a_bad_start_method_is_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.worker_start_method"):
        checked_start_method(value)


def test_good_values_pass() -> None:
    assert checked_worker_timeout(None) is None
    assert checked_worker_timeout(600) == 600.0
    assert checked_worker_timeout("2.5") == 2.5
    assert checked_start_method(None) is None
    assert checked_start_method("spawn") == "spawn"


def test_loader_arguments_only_with_workers() -> None:
    assert worker_loader_kwargs(0, 600.0, "forkserver") == {}  # torch refuses a timeout without workers
    assert worker_loader_kwargs(2, 600.0, None) == {"timeout": 600.0}
    assert worker_loader_kwargs(2, None, "spawn") == {"timeout": 0.0, "multiprocessing_context": "spawn"}


def test_the_data_module_passes_its_options_to_both_loaders() -> None:
    data = SyntheticDataModule(
        resolution=8, num_frames=2, batch_size=2, num_workers=1, train_clips=4, val_clips=2,
        worker_timeout=5, worker_start_method="spawn",
    )  # fmt: skip
    data.setup("fit")
    for loader in (data.train_dataloader(), data.val_dataloader()):
        assert isinstance(loader, WatchedDataLoader)
        assert loader.timeout == 5.0
        assert loader.multiprocessing_context.get_start_method() == "spawn"
    without_workers = SyntheticDataModule(resolution=8, num_frames=2, batch_size=2, num_workers=0)
    without_workers.setup("fit")
    assert without_workers.train_dataloader().timeout == 0
    with pytest.raises(ConfigError, match=r"data\.worker_timeout"):
        SyntheticDataModule(resolution=8, num_workers=1, worker_timeout=-3)


@pytest.mark.parametrize("loader_class", [WatchedDataLoader, ResumableDataLoader])
def test_a_stuck_worker_fails_the_loader_naming_the_key_and_is_stopped(
    tmp_path: Path, loader_class: type
) -> None:
    pid_file = tmp_path / "worker.pid"
    loader = loader_class(StuckInWorkerDataset(pid_file), batch_size=2, num_workers=1, timeout=2.0)
    start = time.perf_counter()
    with pytest.raises(WorkerTimeoutError, match=r"data\.worker_timeout") as error:
        for _ in loader:
            pass
    assert time.perf_counter() - start < 60  # the worker sleeps 120 s
    assert "2 s" in str(error.value) and "timed out" in str(error.value.__cause__)
    worker = int(pid_file.read_text())
    del error  # the traceback holds the loader's iterator, whose shutdown stops the worker
    gc.collect()
    deadline = time.monotonic() + 30
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(worker), "the stuck worker outlived its loader"


def test_without_a_timeout_batches_are_unchanged(tmp_path: Path) -> None:
    dataset = StuckInWorkerDataset(tmp_path / "unused.pid", sleep_s=0.0, n=5)
    loader = WatchedDataLoader(dataset, batch_size=2, num_workers=1, timeout=0)
    assert [batch.tolist() for batch in loader] == [[0, 1], [2, 3], [4]]
