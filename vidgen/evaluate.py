"""``python -m vidgen.evaluate metrics=[fvd,fid,is,clipsim] ckpt_path=... | fake_dir=... [real_dir=...]``

Generates videos from a checkpoint (or reads a folder of .mp4 videos, or of .png images from text-to-image
sampling), reads real videos from a data config or a folder, runs the chosen metrics under their protocols,
prints a table and writes a JSON file. Every weight file the metrics need is checked before anything is
sampled; real feature statistics are cached on disk.

The work is :func:`vidgen.metrics.evaluation_job.run_evaluation`, imported once Hydra has a config
(``--help`` does not load torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.metrics.weights import MissingWeightsError
from vidgen.runtime import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry: evaluate, print the table and write the result to ``output`` (exit 2 on a config error
    or a missing weight file)."""
    from vidgen.metrics.evaluation import format_metrics_table  # torch loads here, not for --help
    from vidgen.metrics.evaluation_job import run_evaluation

    try:
        result = run_evaluation(cfg)
    except (ConfigError, MissingWeightsError) as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_metrics_table(result["metrics"]))
    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str))
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
