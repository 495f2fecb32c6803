"""Evaluation during training: the configured metrics every ``evaluation.every_n_steps`` steps.

Papers plot their metric against training iterations (Latte's ablations, seed 002 Fig. 6: FVD over
iterations). :class:`PeriodicEvaluation` produces those curves: at each multiple of ``every_n_steps`` it
evaluates the current EMA model with the run's ``metrics`` (the same counts, batch size, seed and cached real
statistics as the end-of-training evaluation), appends one JSON line

    {"step": N, "metrics": {"synthetic_fvd": ..., ...}, "train_seconds": ..., "eval_seconds": ...}

to ``<run_dir>/metrics_history.jsonl`` (:data:`HISTORY_FILE`) and logs ``eval/<name>`` at step ``N``. The
end-of-training evaluation (``evaluation.at_end``) appends the row of the final step through
:func:`record_final_evaluation` (so this callback leaves that step to it). ``train_seconds`` is the
wall-clock time of the fit loop up to the row's step without the periodic evaluations themselves (kept
across resumes in the checkpoint); ``experiments/latte/report.py`` reads these files.

Distributed runs: every rank takes part. The generated clips are split over the ranks (each samples
``batch_size`` clips per round with its own noise, rank 0 gathers each round), which also keeps the ranks in
lock-step for a sharded (FSDP) EMA model whose forward pass is a collective. Rank 0 alone reads real clips,
computes the metrics, writes and logs; a barrier ends the evaluation. With one process the clips, labels and
noise (and, for a text model, captions) are exactly those of ``vidgen.evaluate`` / ``evaluation.at_end``
(:func:`vidgen.metrics.evaluation.evaluate_model`).
The first evaluation of a dataset computes the real statistics (then cached) while the other ranks wait in
their first gather: keep that under the process-group timeout (30 minutes by default), e.g. by running
``python -m vidgen.evaluate`` once beforehand.

Metric objects keep per-evaluation state and have no reset, so each evaluation instantiates them afresh from
the ``metrics`` config given once at construction (their networks load lazily, from disk caches); the weight
files are checked once, before training starts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from vidgen.metrics.clip_sources import evaluation_captions, real_from_dataset
from vidgen.metrics.evaluation import build_metrics, dataset_key, protocol_counts
from vidgen.metrics.evaluator import check_required_files, evaluate, frames_to_uint8_batch
from vidgen.metrics.stats_cache import StatsCache

__all__ = [
    "HISTORY_FILE",
    "PeriodicEvaluation",
    "append_history",
    "read_history",
    "record_final_evaluation",
]

#: File name of the evaluation history inside a run directory.
HISTORY_FILE = "metrics_history.jsonl"


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node


def append_history(
    path: str | Path, step: int, metrics: Mapping[str, float], **extra: float | int | None
) -> dict[str, Any]:
    """Append ``{"step": step, "metrics": {...}, **extra}`` (``None`` extras left out) as one JSON line."""
    row: dict[str, Any] = {"step": int(step), "metrics": {str(k): float(v) for k, v in metrics.items()}}
    row.update({k: v for k, v in extra.items() if v is not None})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a history file in step order; for a step written more than once the last row wins."""
    rows: dict[int, dict[str, Any]] = {}
    path = Path(path)
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row["step"])] = row
    return [rows[step] for step in sorted(rows)]


def _truncate_history(path: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (a resumed run re-does those steps)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if int(json.loads(line)["step"]) <= last_step]
    if len(kept) != len(lines):
        path.write_text("".join(f"{line}\n" for line in kept))


def _clips_made(num: int, batch_size: int, world: int) -> int:
    """Clips :class:`_GeneratedClips` makes in all: ``num`` in one process, whole rounds on several."""
    return num if world == 1 else math.ceil(num / (batch_size * world)) * batch_size * world


class _GeneratedClips:
    """Generated clips in rounds, split over the ranks; rank 0's iterator yields each round's gathered batch.

    Round ``r`` makes clips ``(r * world + rank) * batch_size ...`` on each rank (class labels cycle through
    the classes by clip number; a text model gets caption ``i`` of ``captions``, the same list on every
    rank, :func:`_clips_made` long, for clip ``i``). :meth:`finish` runs the rounds a rank has not run yet,
    so that every rank makes the same number of collective calls whatever rank 0's metrics consumed.
    """

    def __init__(
        self,
        module: Any,
        strategy: Any,
        num: int,
        batch_size: int,
        seed: int,
        world: int,
        rank: int,
        captions: list[str] | None = None,
    ):
        self.module, self.strategy = module, strategy
        self.num, self.batch_size, self.world, self.rank = int(num), int(batch_size), int(world), int(rank)
        self.rounds = math.ceil(self.num / (self.batch_size * self.world)) if self.num else 0
        self.captions = captions
        made = _clips_made(self.num, self.batch_size, self.world)
        if captions is not None and len(captions) < made:
            raise ValueError(f"{made} captions needed, got {len(captions)}")
        self.done = 0
        # one process: the stream of vidgen.evaluate (seed); ranks > 0 get streams of their own
        self.generator = torch.Generator().manual_seed(int(seed) + 1_000_003 * self.rank)

    def _round(self) -> dict[str, Any]:
        start = (self.done * self.world + self.rank) * self.batch_size
        # one process: the last round makes only what is left (as vidgen.evaluate does); several: every rank
        # makes full rounds (gathered tensors must have one shape)
        n = min(self.batch_size, self.num - start) if self.world == 1 else self.batch_size
        num_classes = int(self.module.conditioner.num_classes)
        labels = torch.arange(start, start + n) % num_classes if num_classes else None
        captions = self.captions[start : start + n] if self.captions is not None else None
        videos = self.module.generate(n, generator=self.generator, labels=labels, captions=captions)
        videos = frames_to_uint8_batch(videos)
        first = self.done * self.world * self.batch_size  # the round's first clip (all ranks)
        self.done += 1
        batch: dict[str, Any] = {"video": videos, "label": labels}
        if self.world > 1:
            device = self.module.device
            batch["video"] = self.strategy.all_gather(videos.to(device)).flatten(0, 1).cpu()
            if labels is not None:
                batch["label"] = self.strategy.all_gather(labels.to(device)).flatten(0, 1).cpu()
        if self.captions is not None:  # the same list on every rank: no gather needed
            batch["caption"] = self.captions[first : first + len(batch["video"])]
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while self.done < self.rounds:
            yield self._round()

    def finish(self) -> None:
        for _ in self:
            pass


class PeriodicEvaluation(L.Callback):
    """Evaluate the EMA model every ``every_n_steps`` optimizer steps (see the module docstring).

    Args:
        every_n_steps: cadence in optimizer steps; ``None`` (or 0) turns the callback off.
        metrics: the ``metrics`` config node (name -> node with ``_target_``), instantiated per evaluation.
        data: the ``data`` config (plain values), identifies the real clips in the statistics cache.
        history_file: the JSON-lines file rows are appended to.
        cache_dir: ``paths.cache_dir`` (real statistics under ``<cache_dir>/real_stats``).
        num_real, num_fake: override the metrics' protocol counts (``evaluation.num_real`` / ``num_fake``).
        batch_size: clips per sampling batch (per rank).
        seed: seed of the sampling noise (the same noise at every evaluation).
        at_end: ``evaluation.at_end``: the end-of-training evaluation writes the final step's row, so this
            callback skips the final step.
    """

    def __init__(
        self,
        every_n_steps: int | None,
        metrics: Mapping[str, Any] | None,
        data: Mapping[str, Any] | None = None,
        history_file: str | Path = HISTORY_FILE,
        cache_dir: str | Path = "outputs/cache",
        num_real: int | None = None,
        num_fake: int | None = None,
        batch_size: int = 16,
        seed: int = 0,
        at_end: bool = False,
    ) -> None:
        self.every_n_steps = int(every_n_steps or 0)
        if self.every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 1 or None, got {every_n_steps}")
        self.metrics_cfg = _plain(metrics) or {}
        self.data_cfg = _plain(data)
        self.history_file = Path(history_file)
        self.cache_dir = Path(cache_dir)
        self.num_real = None if num_real is None else int(num_real)
        self.num_fake = None if num_fake is None else int(num_fake)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.at_end = bool(at_end)
        self.train_seconds = 0.0  # fit-loop time without these evaluations, across resumes
        self._clock: float | None = None
        self._last_step: int | None = None

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0

    # ------------------------------------------------------------------ clock (kept in checkpoints)
    def _elapsed(self) -> float:
        return self.train_seconds + (time.perf_counter() - self._clock if self._clock is not None else 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))

    # ------------------------------------------------------------------ hooks
    def _build_metrics(self, device: torch.device) -> dict[str, Any]:
        return build_metrics(OmegaConf.create(self.metrics_cfg), device, self.num_real, self.num_fake)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.enabled and stage == "fit":
            check_required_files(self._build_metrics(pl_module.device))  # fail before training, not after

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = time.perf_counter()
        self._last_step = trainer.global_step  # a resumed run's own step was evaluated before (or skipped)
        if self.enabled and trainer.is_global_zero:
            _truncate_history(self.history_file, trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_seconds, self._clock = self._elapsed(), None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if not self.enabled or trainer.fast_dev_run or step == self._last_step:
            return  # off, or gradients are being accumulated (the step has not moved)
        self._last_step = step
        if step % self.every_n_steps:
            return
        if self.at_end and 0 < trainer.max_steps <= step:
            return  # the end-of-training evaluation writes this step's row
        started = time.perf_counter()
        train_seconds = self._elapsed()
        self.evaluate(trainer, pl_module, step, train_seconds=train_seconds)
        self.train_seconds -= time.perf_counter() - started  # the clock counts training only

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, trainer: L.Trainer, pl_module: Any, step: int, train_seconds: float | None = None
    ) -> dict[str, float] | None:
        """Evaluate now, on every rank; rank 0 writes and logs the row and returns the metrics (else None)."""
        started = time.perf_counter()
        metrics = self._build_metrics(pl_module.device)
        need_real, need_fake = protocol_counts(metrics)
        world = trainer.world_size
        # a text model: the captions vidgen.evaluate uses (the data's, deterministic), the same on every rank
        made = _clips_made(need_fake, self.batch_size, world)
        captions = evaluation_captions(pl_module, trainer.datamodule, made)
        fake = _GeneratedClips(
            pl_module,
            trainer.strategy,
            need_fake,
            self.batch_size,
            self.seed,
            world,
            trainer.global_rank,
            captions=captions,
        )
        values = None
        if trainer.is_global_zero:
            datamodule = trainer.datamodule
            real = (
                real_from_dataset(datamodule.evaluation_dataset(need_real), self.batch_size)
                if need_real
                else None
            )
            result = evaluate(
                metrics,
                fake,
                real,
                cache=StatsCache(self.cache_dir / "real_stats"),
                dataset_key=dataset_key(self.data_cfg, None),
            )
            fake.finish()
            values = result["metrics"]
            append_history(
                self.history_file,
                step,
                values,
                train_seconds=train_seconds,
                eval_seconds=time.perf_counter() - started,
            )
            for logger in trainer.loggers:
                logger.log_metrics({f"eval/{k}": v for k, v in values.items()}, step=step)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            rank_zero_info(f"Evaluation at step {step}: {shown}")
        else:
            fake.finish()
        if trainer.world_size > 1:
            trainer.strategy.barrier("periodic_evaluation")
        return values


def record_final_evaluation(
    trainer: L.Trainer, run_dir: str | Path, step: int, metrics: Mapping[str, float]
) -> dict[str, Any]:
    """Append the end-of-training evaluation's row (``evaluation.at_end``) to the run's history: the file of
    the run's :class:`PeriodicEvaluation` callback (with its training clock) when there is one, else
    ``<run_dir>/metrics_history.jsonl``."""
    callback = next((c for c in trainer.callbacks if isinstance(c, PeriodicEvaluation)), None)
    if callback is None:
        return append_history(Path(run_dir) / HISTORY_FILE, step, metrics)
    # the spawn strategies fit in worker processes: this process's callback never ran its clock
    seconds = callback.train_seconds if callback.train_seconds > 0 else None
    return append_history(callback.history_file, step, metrics, train_seconds=seconds)
