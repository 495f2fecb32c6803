"""ResumableSampler / ResumableDataLoader without Lightning: orders, shards, exact mid-epoch resume."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from vidgen.data.loader import ResumableDataLoader, ResumableSampler


class IndexDataset(Dataset):
    """``{"index": i, "video": zeros(1, 1, 1, 1)}``; counts ``__getitem__`` calls (in this process)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.reads.append(index)
        return {"index": index, "video": torch.zeros(1, 1, 1, 1)}


class EpochDataset(IndexDataset):
    """Records the epoch it was told about."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict:
        return {"index": index, "epoch": self.epoch}


def run_epochs(loader: ResumableDataLoader, first_epoch: int, last_epoch: int) -> list[list[int]]:
    """Iterate like Lightning: set_epoch(e) then a full pass; returns the batches' index lists."""
    batches = []
    for epoch in range(first_epoch, last_epoch + 1):
        loader.sampler.set_epoch(epoch)
        batches += [batch["index"].tolist() for batch in loader]
    return batches


def test_epoch_orders_are_seeded_permutations() -> None:
    sampler = ResumableSampler(17, seed=3)
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(17))
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]
    again = ResumableSampler(17, seed=3)
    again.set_epoch(1)
    assert list(again) == orders[1]
    assert list(ResumableSampler(17, seed=4)) != orders[0]
    assert list(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("drop_last", "per_rank"), [(True, 3), (False, 4)])
def test_shards_are_disjoint_and_equal_sized(drop_last: bool, per_rank: int) -> None:
    shards = [
        list(ResumableSampler(10, seed=1, drop_last=drop_last, num_replicas=3, rank=r)) for r in range(3)
    ]
    assert all(len(s) == per_rank for s in shards)
    assert len(ResumableSampler(10, drop_last=drop_last, num_replicas=3, rank=0)) == per_rank
    flat = [i for s in shards for i in s]
    if drop_last:
        assert len(set(flat)) == 9  # disjoint, one item dropped
    else:
        assert set(flat) == set(range(10))  # all covered, two padding repeats
        assert len(set(shards[0]) & set(shards[1])) + len(set(shards[0]) & set(shards[2])) <= 2


def test_world_is_read_from_torch_distributed_at_iteration_time(monkeypatch: pytest.MonkeyPatch) -> None:
    loader = ResumableDataLoader(IndexDataset(12), batch_size=2, seed=0)
    full = [i for b in loader for i in b["index"].tolist()]
    assert len(loader) == 6 and len(full) == 12
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    parts = []
    for rank in range(2):
        monkeypatch.setattr(dist, "get_rank", lambda *a, r=rank, **k: r)
        assert len(loader) == 3
        parts.append([i for b in loader for i in b["index"].tolist()])
    assert sorted(parts[0] + parts[1]) == list(range(12)) and not set(parts[0]) & set(parts[1])
    assert loader.state_dict()["world_size"] == 2


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("consumed", [0, 1, 3])
def test_resume_mid_epoch_matches_uninterrupted_run(num_workers: int, consumed: int) -> None:
    def make(dataset: Dataset) -> ResumableDataLoader:
        return ResumableDataLoader(dataset, batch_size=3, seed=7, num_workers=num_workers)

    reference = run_epochs(make(IndexDataset(14)), 0, 2)  # 4 batches per epoch (drop_last)
    assert len(reference) == 12

    first = make(IndexDataset(14))
    seen = run_epochs(first, 0, 0)
    first.sampler.set_epoch(1)
    iterator = iter(first)
    seen += [next(iterator)["index"].tolist() for _ in range(consumed)]
    state = pickle.loads(pickle.dumps(first.state_dict()))  # checkpoints are pickled
    assert state["epoch"] == 1 and state["batches"] == consumed  # worker prefetching is not counted
    del iterator

    dataset = IndexDataset(14)
    second = make(dataset)
    second.load_state_dict(state)
    assert second.state_dict()["epoch"] == 1 and second.state_dict()["batches"] == consumed
    seen += run_epochs(second, 1, 2)
    assert seen == reference
    if num_workers == 0:  # skipped items are never read
        assert len(dataset.reads) == (4 - consumed) * 3 + 4 * 3


def test_state_counts_batches_handed_out() -> None:
    loader = ResumableDataLoader(IndexDataset(10), batch_size=4, seed=0, drop_last=False)
    assert loader.state_dict()["batches"] == 0 and len(loader) == 3
    iterator = iter(loader)
    assert loader.state_dict() == {
        "epoch": 0,
        "batches": 0,
        "batch_size": 4,
        "num_items": 10,
        "world_size": 1,
    }
    next(iterator)
    next(iterator)
    assert loader.state_dict()["batches"] == 2
    assert len(next(iterator)["index"]) == 2  # the last, incomplete batch is kept
    assert loader.state_dict()["batches"] == 3
    loader.set_epoch(1)
    assert loader.state_dict() == {
        "epoch": 1,
        "batches": 0,
        "batch_size": 4,
        "num_items": 10,
        "world_size": 1,
    }


def test_state_saved_at_epoch_end_resumes_at_next_epoch() -> None:
    reference = run_epochs(ResumableDataLoader(IndexDataset(9), batch_size=2, seed=1), 0, 1)
    first = ResumableDataLoader(IndexDataset(9), batch_size=2, seed=1)
    seen = run_epochs(first, 0, 0)
    state = first.state_dict()
    assert state["epoch"] == 0 and state["batches"] == 4
    second = ResumableDataLoader(IndexDataset(9), batch_size=2, seed=1)
    second.load_state_dict(state)
    # The first iteration starts before set_epoch (as in Lightning's FitLoop.setup_data).
    iterator = iter(second)
    second.sampler.set_epoch(1)
    seen += [b["index"].tolist() for b in iterator]
    assert seen == reference


def test_pending_skip_applies_once_and_is_cancelled_by_a_new_epoch() -> None:
    loader = ResumableDataLoader(IndexDataset(12), batch_size=2, seed=5)
    loader.load_state_dict({"epoch": 0, "batches": 4})
    assert len([b for b in loader]) == 2
    assert len([b for b in loader]) == 6  # the skip was used up
    loader.load_state_dict({"epoch": 0, "batches": 4})
    loader.sampler.set_epoch(1)
    assert len([b for b in loader]) == 6


def test_dataset_epoch_follows_the_sampler() -> None:
    dataset = EpochDataset(4)
    loader = ResumableDataLoader(dataset, batch_size=2, seed=0, num_workers=2)
    loader.sampler.set_epoch(3)
    assert {e for b in loader for e in b["epoch"].tolist()} == {3}
    with pytest.raises(ValueError, match="persistent_workers"):
        ResumableDataLoader(dataset, batch_size=2, num_workers=1, persistent_workers=True)


def test_foreign_samplers_are_refused() -> None:
    with pytest.raises(ValueError, match="use_distributed_sampler=False"):
        ResumableDataLoader(IndexDataset(4), batch_size=2, sampler=list(range(4)))
