"""Shared test helpers: compose the real config tree with tiny overrides."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers resolvers)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(REPO_ROOT / "conf")

# A Latte small enough to train a few steps in a second or two on one CPU core.
TINY_MODEL = ["model.size=tiny", "model.depth=2", "model.hidden_size=32", "model.num_heads=2"]
TINY_DATA = ["data.num_frames=4", "data.resolution=16", "data.batch_size=4", "data.val_clips=8"]
TINY_RUN = [
    # fp32 on every machine (the demo recipe trains and samples in bf16-mixed where the CPU has bf16
    # products), and the unweighted loss (the demo recipe's Min-SNR weighting makes the loss of a batch
    # noisier, and tests compare loss values across runs within a tolerance)
    "trainer.precision=32-true",
    "sampler.precision=32-true",
    "++recipe_diffusion.min_snr_gamma=null",
    # a fixed step count and a constant rate (the demo recipe trains to a wall-clock budget, decaying the
    # rate over it)
    "trainer.max_time=null",
    "optim.schedule=constant",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "trainer.enable_progress_bar=false",
    "~callbacks.progress_bar",
    "callbacks.model_checkpoint.every_n_train_steps=3",
    "sampler=ddim",
    "sampler.steps=3",
    "samples.num_videos=2",
    "samples.final_num_videos=2",
]
TINY = TINY_MODEL + TINY_DATA + TINY_RUN
# a synthetic-metrics classifier trained for 12 steps (seconds, not the default's ~20 s), for the tests whose
# checks do not depend on its accuracy (tests/metrics/test_synthetic_metrics.py checks the default one)
QUICK_CLASSIFIER = "+metrics.synthetic_fvd.classifier={steps:12,batch_size:8,eval_clips:16}"

# The cores are shared by the pytest-xdist workers: more torch threads than cores make the OpenMP threads spin
# against each other (2-3x slower on 2 cores). Each worker takes its share, and so do the subprocesses a test
# starts; without xdist the variable stays unset, so Lightning divides the cores among DDP ranks.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
_THREADS = max(1, min(2, _CORES // _WORKERS))
torch.set_num_threads(_THREADS)
if _WORKERS > 1:
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)


def compose_config(
    overrides: list[str], run_dir: Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides; ``run_dir`` replaces the Hydra run directory."""
    extra = []
    if run_dir is not None:
        extra = [f"paths.run_dir={run_dir}", f"paths.output_root={run_dir.parent}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=[*overrides, *extra])


def attention_heads(module: torch.nn.Module) -> list[tuple[int, int]]:
    """(channels, heads) of every diffusers attention layer inside ``module``, in module order."""
    from diffusers.models.attention_processor import Attention

    return [(m.query_dim, m.heads) for m in module.modules() if isinstance(m, Attention)]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the test files with multiprocess tests first (each holds tens of seconds of DDP / FSDP ranks or
    sweep subprocesses), keeping every other order as collected.

    ``make test`` runs the whole CI suite in one session, one test file per pytest-xdist work unit
    (``--dist loadfile --no-loadscope-reorder``): the long files start early and the many short ones fill in
    after them, so the two workers end close together instead of waiting on one long file at the end.
    """
    heavy = {item.path for item in items if item.get_closest_marker("multiprocess") is not None}
    items.sort(key=lambda item: item.path not in heavy)  # stable: the collected order within each group


def _descendants(pid: int) -> list[int]:
    """Process ids of every living descendant of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended while listed, or not a process
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's "thread" method, which also kills the test's child processes before this one ends.

    A hung test's children (DataLoader workers, DDP ranks, CLI runs) would outlive the pytest-xdist worker
    that pytest-timeout ends with ``os._exit``, and a child still holding the worker's output pipe keeps the
    controller from ever seeing the worker go: the session would wait until CI's own limit (as it did when a
    forked DataLoader worker hung on 2026-12-07). The "signal" method is left to pytest-timeout.
    """
    import pytest_timeout

    if settings.method != "thread":
        return None

    def expire() -> None:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        pytest_timeout.timeout_timer(item, settings)  # dumps every thread's stack, then os._exit(1)

    timer = threading.Timer(float(settings.timeout), expire)
    timer.name = f"pytest_timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  (pytest-timeout's own attribute)
    timer.start()
    return True
