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
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vidgen.config.errors import ConfigError

__all__ = [
    "CACHE_FORMAT",
    "LOADER_ONLY_KEYS",
    "METADATA_FILE",
    "cache_key",
    "caches_cmd_latents",
    "check_cache",
    "fingerprint",
    "read_metadata",
    "write_metadata",
]

#: the metadata file written next to the shards
METADATA_FILE = "vidgen_cache.json"
#: version of the sample layout; a cache of another format is refused
CACHE_FORMAT = 1
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


def read_metadata(cache_dir: str | Path) -> dict[str, Any] | None:
    """The cache's metadata, or None when ``cache_dir`` holds none."""
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
    """The metadata of the complete cache at ``cache_dir`` written with ``cfg``'s :func:`cache_key`.

    Raises:
        ConfigError: naming ``key`` when there is no (complete) vidgen cache there, or naming the first
            config key whose value differs from the cache's (with both values and the fix).
    """
    if "://" in str(cache_dir):
        raise ConfigError(
            key,
            f"'{cache_dir}' is a remote path; the cache's key check reads {METADATA_FILE} from a local folder: "
            "copy the cache (or mount the bucket) and give its local path",
        )
    folder = Path(str(cache_dir)).expanduser()
    metadata = read_metadata(folder)
    if metadata is None:
        raise ConfigError(
            key,
            f"'{folder}' holds no precomputed cache ({METADATA_FILE} not found); write one with "
            "python -m vidgen.precompute <the same data / autoencoder / conditioner overrides> "
            f"precompute.out={folder}",
        )
    if metadata.get("format") != CACHE_FORMAT:
        raise ConfigError(
            key, f"'{folder}' is a cache of format {metadata.get('format')}; this vidgen reads {CACHE_FORMAT}"
        )
    if not metadata.get("complete"):
        raise ConfigError(
            key,
            f"the cache at '{folder}' is incomplete (its precompute was interrupted); run the same "
            "python -m vidgen.precompute command again to finish it",
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
