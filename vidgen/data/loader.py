"""Resumable, shardable training data loading.

Lightning (2.x) stores the ``state_dict()`` of every train dataloader that has ``state_dict`` /
``load_state_dict`` in the checkpoint (``FitLoop.on_save_checkpoint`` -> ``CombinedLoader._state_dicts``) and,
when fitting with ``ckpt_path``, calls ``load_state_dict`` on the fresh train dataloader *before* creating its
iterator (``FitLoop.setup_data`` -> ``_load_combined_loader_states``). It calls ``sampler.set_epoch(epoch)``
before every epoch. :class:`ResumableDataLoader` uses both, so a run resumed from a mid-epoch checkpoint
sees exactly the batches an uninterrupted run would have seen.

Distributed training: the sampler shards the data itself (each rank gets a disjoint, equal-sized part of the
epoch's permutation), so Lightning must not replace it: use ``Trainer(use_distributed_sampler=False)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

from vidgen.data.worker_options import WatchedDataLoader

__all__ = ["ResumableDataLoader", "ResumableSampler"]


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(world_size, rank)``: the explicit values, else torch.distributed's when initialised, else (1, 0)."""
    if num_replicas is not None:
        return int(num_replicas), int(rank or 0)
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(Sampler[int]):
    """Per-epoch permutation of ``range(num_items)``, sharded over ranks, able to resume mid-epoch.

    The epoch order is ``permutation(num_items)`` drawn from ``(seed, epoch)`` (identity when not
    ``shuffle``). It is cut to a multiple of the world size (``drop_last``: the tail is dropped) or padded
    with its first items (not ``drop_last``), and rank ``r`` takes every ``world_size``-th item from ``r``,
    so shards are disjoint (before padding) and all the same length. The world size and rank are read from
    ``torch.distributed`` each time the sampler is iterated or measured, unless given explicitly.

    :meth:`skip_next` makes the *next* iteration start after the first ``n`` items of this rank's shard;
    the skipped items are never produced, so nothing is decoded for them.
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if num_items < 0:
            raise ValueError(f"num_items must be >= 0, got {num_items}")
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.pending_skip = 0
        #: ``(epoch, skipped items)`` of the most recently started iteration.
        self.last_started: tuple[int, int] | None = None

    def world(self) -> tuple[int, int]:
        """``(world_size, rank)`` in effect now."""
        return _world(self.num_replicas, self.rank)

    def __len__(self) -> int:
        """Items per rank per epoch (before any skip)."""
        world_size, _ = self.world()
        if self.drop_last:
            return self.num_items // world_size
        return math.ceil(self.num_items / world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; moving to a different epoch cancels a pending skip."""
        if int(epoch) != self.epoch:
            self.pending_skip = 0
        self.epoch = int(epoch)

    def skip_next(self, num_items: int) -> None:
        """Make the next iteration skip the first ``num_items`` items of this rank's shard."""
        self.pending_skip = max(0, int(num_items))

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's full order for ``epoch`` (no skip)."""
        world_size, rank = self.world()
        if self.shuffle:
            order = np.random.default_rng([self.seed, int(epoch)]).permutation(self.num_items)
        else:
            order = np.arange(self.num_items)
        per_rank = len(self)
        total = per_rank * world_size
        if total > len(order) and len(order) > 0:
            order = np.concatenate([order, np.resize(order, total - len(order))])
        order = order[:total]
        return order[rank:total:world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        # A generator: the epoch and the skip are read when the first index is requested, i.e. after
        # Lightning's set_epoch() when iterating in the main process.
        epoch, skip = self.epoch, self.pending_skip
        self.pending_skip = 0
        self.last_started = (epoch, skip)
        yield from self.epoch_indices(epoch)[skip:]


@dataclass
class _Progress:
    """Batches handed out by one iterator of a :class:`ResumableDataLoader` (main process)."""

    epoch: int = 0
    start_batches: int = 0
    yielded: int = 0


class ResumableDataLoader(WatchedDataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` with ``state_dict`` / ``load_state_dict``.

    ``state_dict()`` is ``{"epoch", "batches", "batch_size", "num_items", "world_size"}``; ``batches`` counts
    the batches this loader has handed out in the current epoch, counted in the main process (worker
    prefetching does not count). After ``load_state_dict`` the next iteration continues the same epoch order
    after those batches (skipping at the sampler level); a state saved at the end of an epoch resumes at the
    start of the next one.

    Each iteration calls ``dataset.set_epoch(epoch)`` when the dataset has it (per-epoch augmentation).
    Because that must reach the workers, ``persistent_workers=True`` is refused for such datasets.

    In distributed runs every rank must be built with the same arguments; use
    ``Trainer(use_distributed_sampler=False)`` so Lightning keeps this sampler (passing ``sampler`` or
    ``batch_sampler`` -- which is what Lightning does to inject its own -- raises).

    Args:
        dataset: a map-style dataset.
        batch_size: per-rank batch size.
        seed: seed of the per-epoch permutations.
        shuffle: permute each epoch (else dataset order).
        drop_last: drop the incomplete last batch and cut the epoch to a multiple of the world size
            (else keep the last batch and pad the shards by repeating items).
        num_replicas: world size override (default: torch.distributed's at iteration time).
        rank: rank override.
        **kwargs: other ``DataLoader`` arguments (``num_workers``, ``collate_fn``, ``pin_memory``, ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_replicas: int | None = None,
        rank: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name in ("sampler", "batch_sampler"):
            if kwargs.get(name) is not None:
                raise ValueError(
                    f"ResumableDataLoader builds its own sharded sampler and takes no `{name}`; with Lightning "
                    "use Trainer(use_distributed_sampler=False)"
                )
            kwargs.pop(name, None)
        if kwargs.get("persistent_workers") and hasattr(dataset, "set_epoch"):
            raise ValueError(
                "persistent_workers=True would freeze the dataset's epoch inside the workers "
                f"({type(dataset).__name__} has set_epoch); leave it False"
            )
        sampler = ResumableSampler(
            len(dataset),  # type: ignore[arg-type]
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            num_replicas=num_replicas,
            rank=rank,
        )
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        self._progress: _Progress | None = None

    @property
    def resumable_sampler(self) -> ResumableSampler:
        return self.sampler  # type: ignore[return-value]

    def set_epoch(self, epoch: int) -> None:
        """Same as ``loader.sampler.set_epoch(epoch)``."""
        self.resumable_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.resumable_sampler.epoch)
        progress = _Progress()
        self._progress = progress
        return self._counting(super().__iter__(), progress)

    def _counting(self, batches: Iterator[Any], progress: _Progress) -> Iterator[Any]:
        for batch in batches:
            if progress.yielded == 0:
                # The sampler has started by now (it runs in the main process); record what it did.
                epoch, skipped = self.resumable_sampler.last_started or (self.resumable_sampler.epoch, 0)
                progress.epoch, progress.start_batches = epoch, skipped // self.batch_size
            progress.yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches", ...}``: the epoch in progress and the batches handed out in it."""
        sampler = self.resumable_sampler
        progress = self._progress
        if progress is not None and progress.yielded > 0 and progress.epoch == sampler.epoch:
            epoch, batches = progress.epoch, progress.start_batches + progress.yielded
        else:
            epoch, batches = sampler.epoch, sampler.pending_skip // self.batch_size
        return {
            "epoch": epoch,
            "batches": batches,
            "batch_size": int(self.batch_size),
            "num_items": sampler.num_items,
            "world_size": sampler.world()[0],
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume: the next iteration continues ``state_dict["epoch"]`` after its consumed batches."""
        sampler = self.resumable_sampler
        for key, mine in (("num_items", sampler.num_items), ("world_size", sampler.world()[0])):
            if key in state_dict and int(state_dict[key]) != mine:
                warnings.warn(
                    f"ResumableDataLoader: resuming with {key}={mine} but the checkpoint has "
                    f"{key}={state_dict[key]}; the data order will not match the interrupted run",
                    stacklevel=2,
                )
        epoch = int(state_dict["epoch"])
        skip = int(state_dict["batches"]) * int(state_dict.get("batch_size", self.batch_size))
        remaining = len(sampler) - skip
        if remaining <= 0 or (self.drop_last and remaining < self.batch_size):
            epoch, skip = epoch + 1, 0  # the saved epoch was complete
        sampler.epoch = epoch
        sampler.skip_next(skip)
        self._progress = None
