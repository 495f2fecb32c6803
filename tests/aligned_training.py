"""Shared harness of the multi-process and switch tests: training whose random streams are aligned with a
reference run, per-rank records written by callbacks, and weight comparisons.

Why aligned streams: vidgen draws a training step's noise and timesteps from a stream keyed by
``(seed, step, rank)`` for that rank's (or micro-batch's) own rows, so 2 ranks x batch 2, or 2 micro-batches
of 2, give each clip other noise than 1 process x batch 4. The modules here draw them for the whole
effective batch from one stream keyed by the step only and keep their own rows, so those runs must agree
with the reference to float precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tests.conftest import TINY, compose_config
from vidgen.config.instantiate import instantiate_node
from vidgen.lit.build import build_module
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.seeding import step_generator


class _AlignedModule(VideoDiffusionModule):
    """Training noise / timesteps for the whole effective batch from one stream keyed by the step; the rows
    this process / micro-batch keeps come from :meth:`_aligned_rows`."""

    def _aligned_rows(self, size: int) -> tuple[torch.Tensor | slice, int]:
        """``(rows kept, effective batch size)`` for a batch of ``size`` clips."""
        raise NotImplementedError

    def _diffusion_losses(
        self, denoiser: Any, batch: dict[str, Any], generator: torch.Generator, train: bool
    ) -> dict[str, torch.Tensor]:
        if not train:
            return super()._diffusion_losses(denoiser, batch, generator, train)
        shared = step_generator(self.seed, self.global_step, 0, 7)
        latents = self.autoencoder.encode(batch["video"], generator=shared).detach()
        cond = self.conditioner(batch, train=True, generator=shared)
        rows, total = self._aligned_rows(latents.shape[0])
        t = torch.randint(0, self.diffusion.num_timesteps, (total,), generator=shared)
        noise = torch.randn((total, *latents.shape[1:]), generator=shared)
        return self.diffusion.training_losses(
            lambda x, tt: denoiser(x, tt, cond), latents, t[rows], noise=noise[rows]
        )


class AlignedStreamsModule(_AlignedModule):
    """Data parallel: rank ``r`` of ``W`` holds the global batch positions ``r, r + W, ...`` (the sampler
    deals the epoch order out round-robin), so 2 ranks x batch b match 1 process x batch 2b."""

    def _aligned_rows(self, size: int) -> tuple[torch.Tensor | slice, int]:
        world = self.trainer.world_size
        return torch.arange(self.global_rank, size * world, world), size * world


class AlignedAccumulationModule(_AlignedModule):
    """Gradient accumulation: micro-batch ``k`` of an optimizer step keeps rows ``k*b .. (k+1)*b - 1`` of
    the effective batch, so 2 micro-batches of b match 1 batch of 2b."""

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self._micro_batch = batch_idx % self._accumulation()
        return super().training_step(batch, batch_idx)

    def _aligned_rows(self, size: int) -> tuple[torch.Tensor | slice, int]:
        start = self._micro_batch * size
        return slice(start, start + size), size * self._accumulation()


def fit_tiny(
    overrides: Sequence[str],
    module_class: type[VideoDiffusionModule],
    callbacks: Sequence[L.Callback],
    run_dir: Path | None = None,
    devices: int = 1,
    strategy: Any = "auto",
    accumulate_grad_batches: int = 1,
    max_steps: int = 4,
) -> VideoDiffusionModule:
    """Train the tiny test config (``tests.conftest.TINY`` + ``overrides``) with ``module_class`` for
    ``max_steps`` steps: same initial weights every time, no validation, logging or checkpoints. Returns the
    module (in this process; under a spawn strategy the workers' state comes back through ``callbacks``)."""
    cfg = compose_config([*TINY, *overrides], run_dir=run_dir)
    L.seed_everything(0, verbose=False)
    module = build_module(cfg)
    module.__class__ = module_class
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        max_steps=max_steps,
        accumulate_grad_batches=accumulate_grad_batches,
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )
    trainer.fit(module, datamodule=instantiate_node(cfg.data))
    return module


class StepRecorder(L.Callback):
    """Writes ``<out_dir>/rank<r>.pt`` at the end of fit: this rank's clip indices and loss of every step,
    and what :meth:`extra` adds. Runs in the worker processes under spawn (it is pickled to them); add it to
    a composed config with :func:`recorder_overrides`."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = str(out_dir)
        self.steps: list[dict[str, Any]] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.steps.append(
            {"step": trainer.global_step - 1, "index": batch["index"].tolist(), "loss": float(loss)}
        )

    def extra(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """More entries of the record (collective calls are allowed: every rank runs this)."""
        return {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "steps": self.steps,
            **self.extra(trainer, pl_module),
        }
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        torch.save(record, Path(self.out_dir) / f"rank{trainer.global_rank}.pt")


def recorder_overrides(target: str, out_dir: Path) -> list[str]:
    """Config overrides that add the recorder callback class ``target`` (dotted path) writing to ``out_dir``."""
    return [f"+callbacks.recorder._target_={target}", f"+callbacks.recorder.out_dir={out_dir}"]


def read_records(out_dir: Path, world: int) -> list[dict[str, Any]]:
    """The ``world`` records a :class:`StepRecorder` wrote, rank order checked."""
    records = [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(world)]
    assert [r["rank"] for r in records] == list(range(world))
    assert all(r["world_size"] == world for r in records)
    return records


def max_weight_difference(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], prefix: str | None = None
) -> float:
    """Largest absolute difference between two state dicts (restricted to keys starting with ``prefix``)."""
    keys = [k for k in a if prefix is None or k.startswith(prefix)]
    assert keys and set(keys) == {k for k in b if prefix is None or k.startswith(prefix)}
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in keys)
