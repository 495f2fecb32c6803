"""Sharded data parallelism (FSDP2) through Lightning, the spawn flavour of DDP, and the helpers the module
uses to apply them.

:class:`SpawnDDPStrategy` is Lightning's ``ddp_spawn`` whose workers destroy their process group and exit
without the interpreter's shutdown once their work is done (``trainer=ddp_spawn``); see
:class:`_CleanExitSpawnLauncher`.

:class:`FSDP2Strategy` is Lightning's :class:`~lightning.pytorch.strategies.ModelParallelStrategy` with a
pure data-parallel device mesh (every rank is one shard of one data-parallel group, no tensor parallelism)
and a choice of how the worker processes start:

- ``launcher="subprocess"`` (default, like ``strategy=ddp``): one process per device started by torchrun,
  SLURM, or by re-running the command (Lightning's script launcher); the way to run on GPUs and many nodes.
- ``launcher="spawn"`` (like ``strategy=ddp_spawn``): workers spawned from inside ``trainer.fit``; safe in
  Hydra multiruns and in tests (two CPU processes with gloo). After fit, rank 0 hands the FULL (gathered)
  weights back to the launching process, so final sampling there needs no process group.

The module shards itself in ``configure_model`` (:func:`shard_denoiser`): ``fully_shard`` on every block of
the denoiser, then on the denoiser as a whole, over the data-parallel mesh. Frozen parts (autoencoder, text
encoder) stay as they are: replicated, without optimizer state. The EMA twin is sharded exactly like the
denoiser, so its update is a purely local ``lerp`` on matching shards.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher, _WorkerOutput
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn


def sharding_units(model: nn.Module) -> list[nn.Module]:
    """The sub-modules FSDP shards one by one (each all-gathers its weights just for its own forward).

    A model names them with a ``sharding_units()`` method; otherwise every element of its top-level
    ``nn.ModuleList`` children (the transformer / U-Net blocks) is one unit. A model without such lists that
    holds several networks (CMD's content and motion denoisers) gets the units of each of its children.
    """
    custom = getattr(model, "sharding_units", None)
    if callable(custom):
        return list(custom())
    units = [unit for child in model.children() if isinstance(child, nn.ModuleList) for unit in child]
    if units:
        return units
    return [unit for child in model.children() for unit in sharding_units(child)]


def independent_networks(model: nn.Module) -> list[nn.Module]:
    """Sub-networks of ``model`` that are called on their own, not through ``model.forward`` (CMD's content
    and motion denoisers): a model names them with an ``independent_networks()`` method. Each becomes an FSDP
    unit of its own, so that calling it gathers its remaining parameters (embedders, final layer); the root's
    gather would never run."""
    custom = getattr(model, "independent_networks", None)
    return list(custom()) if callable(custom) else []


def shard_denoiser(model: nn.Module, mesh: Any, forward_only: bool = False) -> None:
    """``fully_shard`` every unit of ``model``, then each of its :func:`independent_networks`, then ``model``
    itself (its remaining parameters: embedders, final layer) over the 1-D data-parallel ``mesh``.
    Parameters become DTensors sharded on dim 0.

    ``forward_only`` (the EMA twin, which never runs a backward pass): the root reshards after its forward
    too. By default FSDP2 keeps the root's weights gathered after forward for the backward that follows,
    which would leave a forward-only model holding full tensors.
    """
    from torch.distributed.fsdp import fully_shard

    for unit in sharding_units(model):
        fully_shard(unit, mesh=mesh)
    for network in independent_networks(model):
        fully_shard(network, mesh=mesh, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, reshard_after_forward=True if forward_only else None)


def is_sharded(model: nn.Module) -> bool:
    """True when ``model``'s parameters are DTensors (FSDP2)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full (gathered, CPU) state dict of a possibly sharded module. Under FSDP a collective: every rank
    must call it, and only rank 0 gets the tensors (the others get an empty dict)."""
    if not is_sharded(module):
        return module.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True, broadcast_from_rank0=False)
    return get_model_state_dict(module, options=options)


class _CleanExitSpawnLauncher(_MultiProcessingLauncher):
    """Lightning's spawn launcher, but each worker destroys its process group and then leaves without the
    interpreter's shutdown.

    Left to that shutdown, gloo's worker threads release tensors they still reference after Python is gone,
    and a worker now and then dies with SIGABRT ("terminate called without an active exception": a C++ thread
    that asks for the GIL during finalization) after a successful fit, which fails the whole fit in the
    launching process. A barrier after the last collective did not prevent it. Destroying the group while the
    interpreter is whole made it rare but not gone (seen once in five full CI suites on 2026-12-07, in an FSDP
    resume): the group's C++ object lives on while the device mesh, the wrapped module or the strategy still
    refer to it, and those die only in the shutdown. So the worker ends with ``os._exit`` once its work is
    done: the results already went to the launching process through the synchronous ``SimpleQueue``, the
    loggers were finalized at the end of fit, and the standard streams are flushed first. A worker that
    raises still exits through torch's error path (the exception reaches the launching process).
    """

    def _wrapping_function(self, process_idx: int, *args: Any, **kwargs: Any) -> None:
        super()._wrapping_function(process_idx, *args, **kwargs)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


class SpawnDDPStrategy(DDPStrategy):
    """Lightning's ``ddp_spawn`` (DDP, workers spawned from inside ``trainer.fit``) with the clean worker
    exit of :class:`_CleanExitSpawnLauncher`. Keyword arguments are those of
    :class:`~lightning.pytorch.strategies.DDPStrategy` (``process_group_backend``, ``find_unused_parameters``,
    ...), less ``start_method``."""

    def __init__(self, **kwargs: Any) -> None:
        if "start_method" in kwargs:
            raise ValueError("SpawnDDPStrategy always spawns its workers: drop start_method")
        super().__init__(start_method="spawn", **kwargs)

    def _configure_launcher(self) -> None:
        self._launcher = _CleanExitSpawnLauncher(self, start_method="spawn")


class _GatheringSpawnLauncher(_CleanExitSpawnLauncher):
    """Lightning's spawn launcher, but rank 0 sends back the gathered full weights (not its shards)."""

    def _collect_rank_zero_results(self, trainer: L.Trainer, results: Any) -> _WorkerOutput | None:
        callback = trainer.checkpoint_callback
        best_model_path = getattr(callback, "best_model_path", None) if callback else None
        # a collective: every rank takes part in the all-gather, rank 0 keeps the result
        state_dict = full_state_dict(trainer.lightning_module)
        torch.distributed.barrier()  # every rank is done with the gather before any destroys its group
        if self._strategy.local_rank != 0:
            return None
        weights_path = None
        if trainer.state.fn == TrainerFn.FITTING:
            weights_path = os.path.join(tempfile.mkdtemp(), ".temp.ckpt")
            self._strategy.checkpoint_io.save_checkpoint(state_dict, weights_path)
        return _WorkerOutput(
            best_model_path, weights_path, trainer.state, results, self.get_extra_results(trainer)
        )


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 (``fully_shard``) over all ranks: parameters, gradients and optimizer state of the denoiser are
    sharded ``world_size`` ways.

    Args:
        launcher: ``"subprocess"`` (torchrun / SLURM / script re-launch, like ``ddp``) or ``"spawn"`` (workers
            spawned inside fit, like ``ddp_spawn``; for multiruns and CPU tests).
        save_distributed_checkpoint: ``True``: each rank writes its shard, the checkpoint is a folder
            (``vidgen.lit.build.read_checkpoint`` consolidates it for single-process sampling); ``False``:
            rank 0 gathers the full state and writes one ordinary ``.ckpt`` file.
        process_group_backend: ``nccl`` / ``gloo``; default from the device.
    """

    def __init__(
        self,
        launcher: Literal["subprocess", "spawn"] = "subprocess",
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
    ) -> None:
        if launcher not in ("subprocess", "spawn"):
            raise ValueError(f"launcher must be 'subprocess' or 'spawn', got {launcher!r}")
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
        )
        self.launcher_kind = launcher

    def _configure_launcher(self) -> None:
        if self.launcher_kind == "spawn":
            self._launcher = _GatheringSpawnLauncher(self, start_method="spawn")
        else:
            super()._configure_launcher()

    def setup_environment(self) -> None:
        # pure data parallelism: one data-parallel group of all ranks (the parent's "auto" would make it
        # num_nodes and put the devices of a node into a tensor-parallel group)
        self._data_parallel_size = self.num_nodes * self.num_processes
        self._tensor_parallel_size = 1
        super().setup_environment()

    @property
    def saves_sharded_checkpoints(self) -> bool:
        return bool(self._save_distributed_checkpoint)
