"""Shared settings for the diffusion tests."""

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_intra_op_thread() -> Iterator[None]:
    """Run on one intra-op thread: the tensors here are tiny, and on a busy 2-core machine waking a second
    worker thread for every small op costs milliseconds each (it made one 100-step test take 10 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
