"""Precompute a dataset's autoencoder posteriors and text states once, into LitData shards.

``python -m vidgen.precompute`` (:mod:`vidgen.precompute`) calls :func:`precompute`: every clip of the training
split, as the data module draws it in epoch 0 (its random start and flip included), is encoded by the frozen
autoencoder and, with text conditioning, its caption by the text encoder, in ``precompute.num_workers``
processes through ``litdata.optimize``. Each sample is a dict:

* ``latent_mean`` ``(c, F, h, w)`` float32: the autoencoder's unscaled posterior mean (the pixels for
  ``autoencoder=identity``); ``latent_std`` ``(c, F, h, w)``: its standard deviation (a VAE only), so training
  still samples ``z = (mean + std * eps) * scaling_factor`` with the step's generator
  (:meth:`~vidgen.autoencoders.base.FrameAutoencoder.latents_from_posterior`);
* ``text`` ``(L, D)``, ``text_mask`` ``(L,)`` bool, ``pooled_text`` ``(D,)``: the caption's text-encoder
  states (``conditioner=text`` only; dropout for guidance is still drawn per step);
* ``cmd_content`` ``(c, h, w)`` and ``cmd_motion`` ``(D, F, w'+h')``: CMD stage 2's content frame and motion
  latent of the clip, when the frame latents are deterministic (:func:`~vidgen.data.cache_key.caches_cmd_latents`);
* ``label`` (int), ``caption`` (str) when the data has them; ``index`` (the clip's index in the training
  split), ``source`` (its file, or ``synthetic:train:<index>``), ``frame_indices`` ``(F,)`` int64 and
  ``hflip`` (0 / 1).

Resume: litdata's ``use_checkpoint`` records each worker's finished chunks under ``<out>/.checkpoints``; run
the same command again and only the unfinished part is encoded (items after a worker's last written chunk).
The metadata (:mod:`vidgen.data.cache_key`) is written first with ``complete: false`` and completed at the
end; a cache is read for training only when complete.
"""

from __future__ import annotations

import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.cache_key import (
    CACHE_FORMAT,
    METADATA_FILE,
    cache_key,
    caches_cmd_latents,
    first_difference,
    is_remote,
    read_metadata,
    write_metadata,
)
from vidgen.data.datamodule import usable_cpus

__all__ = ["CacheEncoder", "encoder_config", "precompute"]


def encoder_config(cfg: DictConfig) -> dict[str, Any]:
    """The plain config a :class:`CacheEncoder` is built from: ``data``, ``autoencoder``, the text
    ``conditioner``, and for CMD stage 2 (:func:`~vidgen.data.cache_key.caches_cmd_latents`) ``cmd``, ``seed``
    and the model's ``_target_``."""
    names = ["data", "autoencoder"] + (["conditioner"] if cfg.conditioner.kind == "text" else [])
    config: dict[str, Any] = {name: OmegaConf.to_container(cfg[name], resolve=True) for name in names}
    if caches_cmd_latents(cfg):
        config["cmd"] = OmegaConf.to_container(cfg.cmd, resolve=True)
        config["seed"] = int(cfg.seed)
        config["model"] = {"_target_": str(cfg.model._target_)}
    return config


class CacheEncoder:
    """``litdata.optimize``'s ``fn``: training-clip index -> cache sample (module docstring).

    Built from the plain resolved run config; the data module, autoencoder and text encoder are built lazily,
    once per worker process (so the object pickles small for spawned workers).
    """

    def __init__(self, config: dict[str, Any], threads: int = 1) -> None:
        self.config = config
        self.threads = int(threads)
        self._parts: tuple[Any, Any, Any] | None = None
        self._cmd: Any = None

    def _build(self) -> tuple[Any, Any, Any]:
        if self._parts is None:
            torch.set_num_threads(max(1, self.threads))
            cfg = OmegaConf.create(self.config)
            dataset = instantiate_node(cfg.data).train_set
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(0)
            autoencoder = instantiate_node(cfg.autoencoder).eval()
            text = instantiate_node(cfg.conditioner) if "conditioner" in cfg else None
            self._parts = (dataset, autoencoder, text)
            self._cmd = _cmd_autoencoder(cfg) if "cmd" in cfg and caches_cmd_latents(cfg) else None
        return self._parts

    @torch.no_grad()
    def __call__(self, index: int) -> dict[str, Any]:
        dataset, autoencoder, text = self._build()
        item = dataset[int(index)]
        video = item["video"]  # (C, F, H, W)
        mean, std = autoencoder.posterior(video[None])
        sample: dict[str, Any] = {"index": int(item.get("index", index))}
        sample["latent_mean"] = mean[0].float().contiguous()
        if std is not None:
            sample["latent_std"] = std[0].float().contiguous()
        if "label" in item:
            sample["label"] = int(item["label"])
        if "caption" in item:
            sample["caption"] = str(item["caption"])
        if text is not None:
            states, mask, pooled = text.encode([sample["caption"]])
            sample["text"], sample["text_mask"], sample["pooled_text"] = states[0], mask[0], pooled[0]
        if self._cmd is not None:  # CMD stage 2, deterministic frame latents: its content and motion too
            content, motion = self._cmd.encode(autoencoder.latents_from_posterior(mean, std, None))
            sample["cmd_content"], sample["cmd_motion"] = content[0].float(), motion[0].float()
        sample.update(_clip_origin(dataset, sample["index"], video.shape[1]))
        return sample


def _cmd_autoencoder(cfg: DictConfig) -> Any:
    """CMD's frozen stage-1 network for ``cfg`` (``cmd.autoencoder_ckpt``, or the untrained one)."""
    from vidgen.lit.cmd_build import load_cmd_autoencoder, untrained_cmd_autoencoder

    if str(cfg.cmd.autoencoder_ckpt) == "untrained":
        return untrained_cmd_autoencoder(cfg)[0]
    return load_cmd_autoencoder(cfg.cmd.autoencoder_ckpt, cfg)[0]


def _clip_origin(dataset: Any, index: int, num_frames: int) -> dict[str, Any]:
    """``source``, ``frame_indices (F,)`` and ``hflip`` of the clip ``dataset`` just gave for ``index``."""
    last = getattr(dataset, "last_clip", None)
    if last is not None and int(last[0]) == index:  # a video folder (UCF101, WebVid, MSR-VTT, ...)
        _, frames, flipped = last
        source = str(dataset.entries[index].path)
        return {
            "source": source,
            "frame_indices": torch.tensor(frames, dtype=torch.long),
            "hflip": int(flipped),
        }
    stride = int(getattr(dataset, "frame_stride", 1))  # the synthetic generator renders every stride-th frame
    frames = torch.arange(num_frames, dtype=torch.long) * stride
    return {"source": f"synthetic:train:{index}", "frame_indices": frames, "hflip": 0}


def _prepare_output(out: Path, key: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Check ``out`` against the cache about to be written: returns the metadata of a complete matching
    cache (nothing to do), or None once ``out`` is ready (new, replaced, or an interrupted run to resume)."""
    metadata = read_metadata(out)
    if metadata is None:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(
                "precompute.out", f"'{out}' is not empty and holds no {METADATA_FILE}: choose an empty folder"
            )
        return None
    if overwrite:
        shutil.rmtree(out)
        return None
    differs = first_difference(key, metadata.get("key", {}))
    if differs is not None:
        raise ConfigError(
            differs,
            f"is {key.get(differs, '<unset>')!r} but the cache at '{out}' was written with "
            f"{metadata['key'].get(differs, '<unset>')!r}; choose another precompute.out, or "
            "precompute.overwrite=true to replace it",
        )
    if metadata.get("complete"):
        return metadata
    return None


def precompute(cfg: DictConfig, encoder: type[CacheEncoder] = CacheEncoder) -> dict[str, Any]:
    """Encode the training split of ``cfg.data`` into the LitData cache ``cfg.precompute.out`` (module
    docstring); resume an interrupted run of the same config. Returns the cache's metadata plus ``seconds``.

    ``encoder``: the class of litdata's ``fn`` (a :class:`CacheEncoder`; importable by spawned workers).

    Raises:
        ConfigError: ``precompute.out`` is remote (written locally only), holds something else, or a cache of
            another config (naming the first key that differs), or the data cannot be cached (image-video
            joint training).
    """
    import litdata

    from vidgen.data.num_classes import fill_num_classes

    fill_num_classes(cfg)
    options = cfg.precompute
    if not options.get("out"):
        raise ConfigError("precompute.out", "is not set: the folder to write the cache into")
    if is_remote(options.out) or "://" in str(options.out):
        raise ConfigError(
            "precompute.out",
            f"'{options.out}' is remote; precompute writes (and resumes) a local folder: write it to a local "
            f"folder, upload that folder with your tool of choice, then train with data.cache={options.out}",
        )
    if int(cfg.data.get("joint_image_frames", 0) or 0) > 0:
        raise ConfigError(
            "data.joint_image_frames", "a cache holds whole clips: image-video joint training cannot use one"
        )
    out = Path(str(options.out)).expanduser().resolve()
    key = cache_key(cfg)
    num_workers = max(1, int(options.num_workers))
    done = _prepare_output(out, key, bool(options.overwrite))
    if done is not None:
        print(f"vidgen: the cache at {out} is complete ({done['num_items']} clips); nothing to do")
        return {**done, "seconds": 0.0}
    previous = read_metadata(out)
    if previous is not None and int(previous["num_workers"]) != num_workers:
        warnings.warn(
            f"precompute.num_workers={num_workers} but the interrupted run used {previous['num_workers']}: "
            "resuming with its worker count (litdata's checkpoints are per worker)",
            stacklevel=2,
        )
        num_workers = int(previous["num_workers"])
    config = encoder_config(cfg)
    datamodule = instantiate_node(cfg.data)
    num_items = len(datamodule.train_set)
    out.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "key": key,
        "complete": False,
        "split": "train",
        "num_items": num_items,
        "num_workers": num_workers,
        "created": previous["created"] if previous else time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_metadata(out, metadata)
    threads = max(1, int(options.get("threads_per_worker") or 0) or usable_cpus() // num_workers)
    start = time.perf_counter()
    unfinished = (
        f"precompute into {out} did not finish (see the worker's error above); run the same command again "
        "to resume from the chunks already written"
    )
    try:
        litdata.optimize(
            fn=encoder(config, threads=threads),
            inputs=list(range(num_items)),
            output_dir=str(out),
            chunk_bytes=str(options.chunk_bytes),
            num_workers=num_workers,
            use_checkpoint=True,
            keep_data_ordered=True,
            reorder_files=False,
            start_method=options.get("start_method"),
            verbose=bool(options.get("progress", True)),
        )
    except RuntimeError as error:  # litdata re-raises a worker's error (or only prints it, below)
        raise RuntimeError(f"{unfinished}: {str(error).strip().splitlines()[-1]}") from error
    seconds = time.perf_counter() - start
    if not (out / "index.json").is_file():
        raise RuntimeError(unfinished)
    written = litdata.StreamingDataset(str(out))
    sample = written[0]
    metadata.update(
        complete=True,
        num_items=len(written),
        fields=sorted(sample),
        latent_shape=list(sample["latent_mean"].shape),
    )
    if len(written) != num_items:
        raise RuntimeError(f"the cache at {out} holds {len(written)} clips, expected {num_items}")
    write_metadata(out, metadata)
    shutil.rmtree(out / ".checkpoints", ignore_errors=True)
    print(f"vidgen: wrote {num_items} clips to {out} in {seconds:.1f} s")
    return {**metadata, "seconds": seconds}
