"""What identifies a precomputed latent cache (:mod:`vidgen.data.latent_cache`): its key and its metadata.

The key holds every config value that changes a cache's contents, as flat dotted config keys:

* ``autoencoder.kind`` / ``.path`` / ``.subfolder`` / ``.scaling_factor`` and ``autoencoder.weights``, a
  fingerprint of the weight files (name, size and a digest of their first and last MiB);
* every ``data.*`` key except the loader-only ones (:data:`LOADER_ONLY_KEYS`: batch size, workers, validation
  caps, ...): resolution, frames, frame stride, root, split, seed, flips, ...; folder paths made absolute;
* ``conditioner.kind`` and, with text, the text encoder (``conditioner.path`` + its fingerprint as
  ``conditioner.weights``, ``model_name``, ``max_length``, ``pad_token``);
* for CMD stage 2 on a deterministic frame autoencoder (:func:`caches_cmd_latents`): the stage-1 checkpoint
  (``cmd.autoencoder_ckpt``, its fingerprint as ``cmd.autoencoder_weights``) and ``cmd.compat_release``.

The metadata (``vidgen_cache.json`` next to the shards) is ``{"format", "key", "complete", "num_items",
"fields", "num_workers", ...}``; :func:`check_cache` compares a training config's key with it and fails
naming the first key that differs.

A cache is a local folder or any path LitData streams from (:data:`REMOTE_PREFIXES`: ``s3://``, ``gs://``,
``azure://``, ``hf://``, ``r2://``, and ``local:<dir>``, LitData's remote-style local folder): the metadata of a
remote cache is fetched through LitData's own downloader (the credentials and storage options it uses for the
shards) into a temporary folder, then checked as a local one's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vidgen.config.errors import ConfigError

__all__ = [
    "CACHE_FORMAT",
    "LOADER_ONLY_KEYS",
    "METADATA_FILE",
    "REMOTE_PREFIXES",
    "cache_key",
    "cache_location",
    "caches_cmd_latents",
    "check_cache",
    "fingerprint",
    "is_remote",
    "read_metadata",
    "write_metadata",
]

#: the metadata file written next to the shards
METADATA_FILE = "vidgen_cache.json"
#: version of the sample layout; a cache of another format is refused
CACHE_FORMAT = 1
#: prefixes of the paths LitData streams from through a downloader (litdata.streaming.downloader); ``local:``
#: is a local folder read the way a bucket is (its chunks copied into LitData's chunk cache)
REMOTE_PREFIXES: tuple[str, ...] = ("s3://", "gs://", "azure://", "hf://", "r2://", "local:")
#: ``data.*`` keys that change how clips are loaded or validated, not which training clips exist
LOADER_ONLY_KEYS = frozenset(
    {
        "batch_size",
        "num_workers",
        "val_batch_size",
        "drop_last",
        "pin_memory",
        "probe",
        "cache",
        "val_clips",
        "val_max_clips",
        "num_classes",
        "eval_captions",
        "joint_image_frames",
    }
)
#: ``data.*`` keys holding a path (compared absolute)
_PATH_KEYS = frozenset({"root", "val_root", "split_dir"})
#: the text encoder's keys (with ``conditioner.kind=text``)
_TEXT_KEYS = ("path", "model_name", "max_length", "pad_token")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json")
_MIB = 1 << 20


def _file_digest(path: Path) -> str:
    """``<size>:<sha256 of the first and last MiB>`` (cheap on multi-GB files, sensitive to any re-save)."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_MIB))
        if size > 2 * _MIB:
            handle.seek(size - _MIB)
            digest.update(handle.read(_MIB))
    return f"{size}:{digest.hexdigest()[:16]}"


def fingerprint(path: str | Path | None, subfolders: tuple[str, ...] = ()) -> str | None:
    """A fingerprint of the weights at ``path``: a file's :func:`_file_digest`, or for a folder those of its
    weight / config files (and of the first of ``subfolders`` present, e.g. an SD folder's ``vae/``); None when
    ``path`` is unset or missing."""
    if path is None or str(path) in ("", "None"):
        return None
    path = Path(str(path)).expanduser()
    if path.is_file():
        return _file_digest(path)
    if not path.is_dir():
        return None
    folders = [path, *[path / sub for sub in subfolders if (path / sub).is_dir()][:1]]
    parts = [
        f"{file.relative_to(path)}={_file_digest(file)}"
        for folder in folders
        for file in sorted(folder.iterdir())
        if file.is_file() and file.suffix in _WEIGHT_SUFFIXES
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _absolute(value: Any) -> Any:
    return str(Path(str(value)).expanduser().resolve()) if value not in (None, "") else value


def caches_cmd_latents(cfg: DictConfig) -> bool:
    """Whether a cache for ``cfg`` holds CMD's content frames and motion latents too: for CMD stage 2
    (``model=cmd``) on a deterministic frame autoencoder (``identity``, or ``sample_posterior: false``); with a
    sampled posterior they change every step, and the cache holds the frame posterior only."""
    target = str(OmegaConf.select(cfg, "model._target_", default="") or "")
    deterministic = cfg.autoencoder.kind == "identity" or not bool(
        cfg.autoencoder.get("sample_posterior", False)
    )
    return target.endswith("CMDDenoisers") and deterministic


def cache_key(cfg: DictConfig) -> dict[str, Any]:
    """The flat ``{dotted config key: value}`` identifying the cache ``cfg`` writes or reads (module
    docstring). Values are plain JSON (lists for sequences)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    autoencoder = OmegaConf.to_container(cfg.autoencoder, resolve=True)
    conditioner = OmegaConf.to_container(cfg.conditioner, resolve=True)
    assert isinstance(data, dict) and isinstance(autoencoder, dict) and isinstance(conditioner, dict)
    key: dict[str, Any] = {}
    key["autoencoder.kind"] = autoencoder.get("kind")
    if autoencoder.get("kind") != "identity":
        key["autoencoder.path"] = _absolute(autoencoder.get("path"))
        key["autoencoder.subfolder"] = autoencoder.get("subfolder")
        sub = (str(autoencoder["subfolder"]),) if autoencoder.get("subfolder") else ("vae",)
        key["autoencoder.weights"] = fingerprint(autoencoder.get("path"), sub)
    key["autoencoder.scaling_factor"] = float(autoencoder.get("scaling_factor", 1.0))
    for name in sorted(data):
        if name.startswith("_") or name in LOADER_ONLY_KEYS:
            continue
        value = data[name]
        key[f"data.{name}"] = _absolute(value) if name in _PATH_KEYS else value
    key["conditioner.kind"] = conditioner.get("kind")
    if conditioner.get("kind") == "text":
        for name in _TEXT_KEYS:
            value = conditioner.get(name)
            key[f"conditioner.{name}"] = _absolute(value) if name == "path" else value
        key["conditioner.weights"] = fingerprint(conditioner.get("path"), ("text_encoder",))
    if caches_cmd_latents(cfg):
        checkpoint = str(cfg.cmd.autoencoder_ckpt)
        key["cmd.autoencoder_ckpt"] = checkpoint if checkpoint == "untrained" else _absolute(checkpoint)
        key["cmd.autoencoder_weights"] = (
            f"untrained {cfg.cmd.untrained_size}, seed {cfg.seed}"
            if checkpoint == "untrained"
            else fingerprint(checkpoint)
        )
        key["cmd.compat_release"] = bool(cfg.cmd.compat_release)
    return json.loads(json.dumps(key))  # tuples -> lists, as the JSON file holds them


def is_remote(cache_dir: str | Path) -> bool:
    """Whether ``cache_dir`` is a path LitData reads through a downloader (:data:`REMOTE_PREFIXES`)."""
    return str(cache_dir).startswith(REMOTE_PREFIXES)


def cache_location(cache_dir: str | Path) -> str:
    """``cache_dir`` as LitData's ``StreamingDataset`` takes it: a remote path unchanged, a local one with
    ``~`` expanded."""
    return str(cache_dir) if is_remote(cache_dir) else str(Path(str(cache_dir)).expanduser())


def _not_found(error: BaseException) -> bool:
    """Whether a downloader's error says the object does not exist (not credentials, network, ...):
    ``FileNotFoundError``, obstore's ``NotFoundError``, boto's 404 / ``NoSuchKey``, Google's and Azure's
    ``NotFound`` / ``ResourceNotFoundError``, the Hub's ``EntryNotFoundError``."""
    if isinstance(error, ImportError):  # ModuleNotFoundError: the backend's client library is missing
        return False
    if isinstance(error, FileNotFoundError) or "NotFound" in type(error).__name__:
        return True
    response = getattr(error, "response", None)  # botocore's ClientError
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) in ("404", "NoSuchKey", "NotFound")


def _read_remote_metadata(cache_dir: str, key: str) -> dict[str, Any] | None:
    """The metadata of the remote cache ``cache_dir``, fetched through LitData's downloader for its prefix
    into a temporary folder; None when the file does not exist there.

    Raises:
        ConfigError: naming ``key`` when the downloader fails otherwise (credentials, network, a missing
            client library), with its error.
    """
    from litdata.streaming import downloader as litdata_downloader

    remote = f"{cache_dir.rstrip('/')}/{METADATA_FILE}"
    with tempfile.TemporaryDirectory(prefix="vidgen_cache_") as folder:
        local = os.path.join(folder, METADATA_FILE)
        try:
            litdata_downloader.get_downloader(cache_dir, folder, chunks=[]).download_file(remote, local)
        except Exception as error:  # any backend's error: missing is a missing cache, the rest is reported
            if _not_found(error):
                return None
            first = (str(error).strip().splitlines() or [""])[0]
            raise ConfigError(
                key,
                f"could not fetch '{remote}' through LitData's downloader: {type(error).__name__}: {first}",
            ) from error
        if not os.path.isfile(local):
            return None
        return json.loads(Path(local).read_text())


def read_metadata(cache_dir: str | Path, key: str = "data.cache") -> dict[str, Any] | None:
    """The cache's metadata, or None when ``cache_dir`` holds none; a remote ``cache_dir``
    (:func:`is_remote`) is read through LitData's downloader (``key`` names the setting in its errors)."""
    if is_remote(cache_dir):
        return _read_remote_metadata(str(cache_dir), key)
    path = Path(cache_dir) / METADATA_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def write_metadata(cache_dir: str | Path, metadata: dict[str, Any]) -> None:
    """Write the metadata atomically (a half-written file never looks like a cache)."""
    path = Path(cache_dir) / METADATA_FILE
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(metadata, indent=2, sort_keys=True))
    partial.replace(path)


def first_difference(wanted: dict[str, Any], stored: dict[str, Any]) -> str | None:
    """The first key (sorted) whose value differs between two cache keys, or None when they match."""
    for name in sorted(set(wanted) | set(stored)):
        if wanted.get(name, "<unset>") != stored.get(name, "<unset>"):
            return name
    return None


def check_cache(cache_dir: str | Path, cfg: DictConfig, key: str = "data.cache") -> dict[str, Any]:
    """The metadata of the complete cache at ``cache_dir`` (a local folder or a remote path,
    :func:`read_metadata`) written with ``cfg``'s :func:`cache_key`.

    Raises:
        ConfigError: naming ``key`` when there is no (complete) vidgen cache there, or naming the first
            config key whose value differs from the cache's (with both values and the fix).
    """
    remote = is_remote(cache_dir)
    if "://" in str(cache_dir) and not remote:
        raise ConfigError(
            key,
            f"'{cache_dir}' is not a path LitData streams from: give a local folder or a path starting with "
            f"one of {', '.join(REMOTE_PREFIXES)}",
        )
    folder = cache_location(cache_dir)
    metadata = read_metadata(folder, key)
    if metadata is None:
        write = (
            f"precompute.out=<a local folder>, then upload that folder to '{folder}'"
            if remote
            else f"precompute.out={folder}"
        )
        found = f"{METADATA_FILE} not found" + (
            " there, or not reachable: some downloaders report both alike" if remote else ""
        )
        raise ConfigError(
            key,
            f"'{folder}' holds no precomputed cache ({found}); write one with "
            f"python -m vidgen.precompute <the same data / autoencoder / conditioner overrides> {write}",
        )
    if metadata.get("format") != CACHE_FORMAT:
        raise ConfigError(
            key, f"'{folder}' is a cache of format {metadata.get('format')}; this vidgen reads {CACHE_FORMAT}"
        )
    if not metadata.get("complete"):
        raise ConfigError(
            key,
            f"the cache at '{folder}' is incomplete (its precompute was interrupted); run the same "
            "python -m vidgen.precompute command again to finish it"
            + (" and upload the finished folder" if remote else ""),
        )
    wanted, stored = cache_key(cfg), metadata["key"]
    differs = first_difference(wanted, stored)
    if differs is not None:
        raise ConfigError(
            differs,
            f"is {wanted.get(differs, '<unset>')!r} but the cache at '{folder}' was written with "
            f"{stored.get(differs, '<unset>')!r}; train with the cache's value, or precompute a new cache "
            "for this config (another precompute.out)",
        )
    return metadata
