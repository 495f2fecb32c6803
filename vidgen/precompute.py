"""``python -m vidgen.precompute [train overrides] precompute.out=<dir>``: encode a dataset once into a cache.

The training clips of ``data`` are encoded by the frozen ``autoencoder`` (posterior mean and std) and, with
``conditioner=text``, their captions by the text encoder, into LitData shards with a metadata JSON that keys
the cache by every setting that changes its contents (:mod:`vidgen.data.latent_cache`,
:mod:`vidgen.data.cache_key`). ``python -m vidgen.train <same overrides> data.cache=<dir>`` then trains without
running either encoder. Running the same command again resumes an interrupted run.

Exit status: 0 done (or the cache was complete already); 2 a config error (e.g. ``precompute.out`` holds a
cache of another config: the message names the key that differs).
"""

from __future__ import annotations

import json
import sys

import hydra
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="precompute", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry: write (or finish) the cache and print its metadata as JSON."""
    from vidgen.data.latent_cache import precompute  # torch loads here, not for --help

    try:
        metadata = precompute(cfg)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps({k: v for k, v in metadata.items() if k != "key"}, indent=2))


if __name__ == "__main__":
    main()
