"""``python -m vidgen.bench [train overrides]``: measure the composed training config.

Reports the denoiser's trainable parameter count, training throughput (clips/s over forward + backward +
AdamW step, after warmup), sampling time per video with the configured sampler and guidance, and peak memory
(CUDA allocator peak on GPU; process peak RSS on CPU). Prints a table and JSON and writes ``bench.json``.

The data side beside it (:mod:`vidgen.benchmark.loader`): the training loader's clips/s from the folders (or
the generator) with each of ``bench.loader_workers`` and from ``data.cache`` when set, and with
``bench.cached_step=true`` the training step on cached batches against encoded ones, timed round-robin, so a
user sees whether decoding, encoding or the denoiser limits training.

``bench.compare=[latent_shift,latent_vdm]`` measures several model configs side by side in one run: each
listed ``conf/model/<name>.yaml`` is composed with the command's other overrides (so the same data, video
shape, autoencoder, conditioner, recipe, sampler and U-Net ``model.size``), measured as above, and one table
with a column per model and a ratio column (first / second) is printed; ``bench.json`` holds every result.
Text-conditional models get captions in the timed training batch and at sampling.

``bench.flops=true`` adds the sampling FLOPs (and MACs) per video, total and per stage, counted on the meta
device (:mod:`vidgen.benchmark.sampling_flops`); ``bench.time=false`` skips the timed rows, so paper-size
FLOP comparisons run on a CPU without weights (conf/bench.yaml shows the command).

``bench.peers=[official,diffusers]`` times the composed vidgen Latte's training step beside the official Latte
code (a local ``models/latte.py`` named by ``bench.official_latte``) and diffusers' ``LatteTransformer3DModel``
at the same sizes, round-robin in this process (:mod:`vidgen.benchmark.peers`): a table of parameters, step
GFLOPs, median step time and the ratio peer / vidgen, in place of the usual rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR


def measure(
    cfg: DictConfig, overrides: list[str] | None = None, config_name: str = "bench"
) -> tuple[dict[str, Any], str]:
    """Measure ``cfg`` (or the ``bench.compare`` models composed from ``overrides`` and ``config_name``, or the
    Latte against its ``bench.peers``): ``(result, printed table)``.

    ``data.num_classes: null`` is read from the data first, as ``vidgen.train`` does
    (:func:`~vidgen.data.num_classes.fill_num_classes`), in every compared config too.

    Raises:
        ConfigError: a bad value, naming its key.
    """
    # torch and Lightning load here, not for --help
    from vidgen.benchmark.compare import compose_compared_configs, format_comparison, run_comparison
    from vidgen.benchmark.measure import format_table, run_bench
    from vidgen.benchmark.peers import format_peers, run_peers
    from vidgen.data.num_classes import fill_num_classes

    fill_num_classes(cfg)
    names = [str(name) for name in cfg.bench.get("compare") or []]
    if cfg.bench.get("peers"):
        result = run_peers(cfg)
        return result, format_peers(result)
    if names:
        configs = compose_compared_configs(names, list(overrides or []), config_name)
        for config in configs:
            fill_num_classes(config)
        result = run_comparison(names, configs)
        return result, format_comparison(result)
    result = run_bench(cfg)
    return result, format_table(result)


@hydra.main(config_path=CONFIG_DIR, config_name="bench", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry: :func:`measure`, print the table and the JSON and write ``bench.json`` into the run
    directory (exit 2 on a config error)."""
    try:
        if cfg.bench.get("compare"):
            hydra_cfg = HydraConfig.get()
            result, table = measure(cfg, list(hydra_cfg.overrides.task), hydra_cfg.job.config_name)
        else:
            result, table = measure(cfg)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(table)
    print(json.dumps(result, indent=2))
    out = Path(cfg.paths.run_dir) / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
