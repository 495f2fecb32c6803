"""Training from a precomputed cache (``data.cache=<dir>``): LitData's streaming loader for the training clips.

:func:`build_datamodule` is how ``vidgen.train`` builds its data: the data module of ``cfg.data``, wrapped in a
:class:`CachedDataModule` when ``data.cache`` is set. The wrapper's training loader is a LitData
``StreamingDataLoader`` over a ``StreamingDataset`` of the cache (:mod:`vidgen.data.latent_cache`): shuffled per
epoch from ``data.seed``, each rank (and each loader worker) streams its own part of every epoch, and the
loader's ``state_dict`` (samples yielded, epoch, shuffle state) goes into the Lightning checkpoint, so a resumed
run continues the interrupted epoch where it stopped. Its batches carry ``latent_mean`` / ``latent_std`` (and text
states) instead of ``video``; the module skips the encoders (:func:`vidgen.autoencoders.base.batch_latents`).
Everything else (validation clips, sampling conditions, evaluation clips, class names) comes from the wrapped data
module, i.e. from the folders: only training reads the cache.

The cache must have been written for this config: :func:`~vidgen.data.cache_key.check_cache` fails naming the
first key that differs. It may be a local folder or any path LitData streams from (``s3://``, ``gs://``,
``azure://``, ``hf://``, ``r2://``, ``local:``): a remote path goes to ``StreamingDataset`` unchanged, and LitData
copies the chunks it reads into its chunk cache (``$LITDATA_CACHE_DIR``, else ``~/.lightning/chunks``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig

from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.cache_key import cache_location, check_cache

__all__ = ["CachedDataModule", "build_datamodule"]


def build_datamodule(cfg: DictConfig) -> Any:
    """The data module of ``cfg.data``; with ``data.cache`` set, wrapped to train from that cache (checked
    against ``cfg`` first)."""
    cache = cfg.data.get("cache")
    datamodule = instantiate_node(cfg.data)
    if not cache:
        return datamodule
    if int(cfg.data.get("joint_image_frames", 0) or 0) > 0:
        raise ConfigError(
            "data.joint_image_frames", "a cache holds whole clips: set it to 0 or train without data.cache"
        )
    metadata = check_cache(cache, cfg)
    return CachedDataModule(datamodule, cache_location(cache), metadata)


class CachedDataModule(pl.LightningDataModule):
    """A data module that trains from a LitData cache and validates with ``inner`` (module docstring).

    Args:
        inner: the data module of the same ``data`` config (its batch size, workers, seed and ``drop_last``
            are the loader's; its attributes are this module's).
        cache_dir: the cache (complete, checked): a local folder or a remote path LitData streams from.
        metadata: the cache's metadata (``num_items``, ``fields``, ...).
    """

    def __init__(self, inner: Any, cache_dir: str, metadata: dict[str, Any]) -> None:
        super().__init__()
        self.inner = inner
        self.cache_dir = cache_dir
        self.metadata = metadata

    def __getattr__(self, name: str) -> Any:
        # only reached for attributes this module lacks: the wrapped module's (num_classes, sample_captions, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def train_dataloader(self) -> Any:
        """LitData's loader over the cache: shuffled from ``data.seed``, sharded over ranks and workers."""
        from litdata import StreamingDataLoader, StreamingDataset

        drop_last = bool(self.inner.drop_last)
        dataset = StreamingDataset(
            self.cache_dir, shuffle=True, drop_last=drop_last, seed=int(self.inner.seed)
        )
        return StreamingDataLoader(
            dataset,
            batch_size=int(self.inner.batch_size),
            num_workers=int(self.inner.num_workers),
            drop_last=drop_last,
            pin_memory=bool(self.inner.pin_memory),
            # data.worker_timeout / data.worker_start_method (litdata passes them to torch's DataLoader)
            **self.inner.worker_loader_kwargs(),
        )

    def val_dataloader(self) -> Any:
        """The wrapped module's validation clips (decoded from the folders, encoded by the module)."""
        return self.inner.val_dataloader()

    def attach_bad_video_log(self, log: Any) -> None:
        """Bad videos of the validation split (the cache was written from readable clips)."""
        attach = getattr(self.inner, "attach_bad_video_log", None)
        if callable(attach):
            attach(log)
