"""``python -m vidgen.train [group=option ...] [key=value ...]``: train a video diffusion model.

With no arguments: a tiny Latte (variant 1) on the built-in synthetic data, on the CPU, in a few minutes.
Everything the run writes goes under its Hydra run directory: the resolved config, TensorBoard logs (loss
curves and sample videos), sample .mp4 files (.png images for one-frame models) and checkpoints. The run
itself is :func:`vidgen.lit.training.train`, imported once Hydra has a config to train (``--help`` and
``--cfg`` do not load torch or Lightning).
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry: train; return the sweeper's objective (:func:`objective_value`) on rank 0.

    Exit status: 0 done; 2 a config error; 130 (Ctrl-C) or 143 (SIGTERM) stopped by the signal after writing
    the checkpoint that resumes it (:func:`vidgen.lit.callbacks.interrupted_exit_code`); 1 any other failure
    (a crash).
    """
    from vidgen.lit.compare_arm import run_arm  # torch and Lightning load here, not for --help
    from vidgen.lit.training import train

    try:
        # an arm of the method comparison (experiment=compare/methods): its stages, budget and costs.json
        summary = run_arm(cfg, train) if "compare" in cfg else train(cfg)
        if summary["exit_code"]:
            raise SystemExit(summary["exit_code"])
        if summary["global_rank"] != 0:
            return None  # ranks started by ddp / fsdp / SLURM: only rank 0 evaluates and reports
        return objective_value(summary, cfg.get("optimized_metric"))
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def objective_value(summary: dict[str, Any], name: str | None) -> float | None:
    """The value a Hydra sweeper (e.g. Optuna) optimises: ``optimized_metric`` looked up first among the
    end-of-training evaluation metrics (``evaluation.at_end=true``), then among the logged metrics
    (``val/loss``, ``train/loss``). ``None`` when no name is configured."""
    if not name:
        return None
    for source in (summary.get("evaluation") or {}, summary["metrics"]):
        if name in source:
            return float(source[name])
    available = sorted({*(summary.get("evaluation") or {}), *summary["metrics"]})
    raise ConfigError("optimized_metric", f"'{name}' was not produced by this run; available: {available}")


if __name__ == "__main__":
    main()
