"""Starting the extra ranks of script-relaunching strategies (``trainer=ddp`` / ``fsdp``) inside a Hydra
multirun: each child must be one rank of the current sweep job, not a re-run of the whole sweep."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import lightning as L
import torch
from omegaconf import OmegaConf

__all__ = ["relaunch_only_this_job"]

#: variables Lightning's script launcher exports to the launching process
_LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def _relaunches_script(trainer: L.Trainer) -> bool:
    """True when the trainer's strategy starts ranks 1..N-1 by re-running the command line."""
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and trainer.world_size > 1
        and not trainer.strategy.cluster_environment.creates_processes_externally
    )


@contextlib.contextmanager
def relaunch_only_this_job(trainer: L.Trainer) -> Iterator[None]:
    """Make script-relaunching strategies (``ddp``, ``fsdp``) start the extra ranks of THIS multirun job.

    Lightning starts ranks 1..N-1 by re-running ``sys.argv`` with ``hydra.run.dir=<hydra.run.dir>``. Inside
    a Hydra multirun that command still holds ``-m`` and the sweep, so every child would run the whole
    sweep again (into another sweep folder). For the duration of the fit (the body of the ``with``), the
    command becomes this job's own overrides and ``hydra.run.dir`` this job's output folder, so a child is
    one rank of this job. Outside a multirun, or with any other strategy, it changes nothing.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not (
        _relaunches_script(trainer)
        and HydraConfig.initialized()
        and HydraConfig.get().mode == RunMode.MULTIRUN
    ):
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv, saved_run_dir = list(sys.argv), hydra_cfg.run.dir
    # the launcher also exports these to the parent process, where they would make the next job believe
    # that its ranks were started externally (and wait for children that never come)
    saved_env = {name: os.environ.get(name) for name in _LAUNCH_ENV}
    OmegaConf.set_readonly(hydra_cfg, False)
    hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    try:
        yield
    finally:
        sys.argv = saved_argv
        hydra_cfg.run.dir = saved_run_dir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        OmegaConf.set_readonly(hydra_cfg, True)
        # the next job of the sweep starts its own ranks: this job's process group must not be reused
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
