"""Remote caches (``data.cache=s3://...``, ``local:<dir>``): the metadata comes through LitData's downloader, the
key is checked as for a local folder, and training streams the shards from the path as given."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest
from omegaconf import DictConfig

from tests.conftest import TINY, compose_config
from tests.latent_cache_helpers import CACHE_RUN
from vidgen.config.errors import ConfigError
from vidgen.data.cache_key import CACHE_FORMAT, METADATA_FILE, cache_key, check_cache

#: the synthetic data's shape x motion classes


def _overrides(*extra: str) -> list[str]:
    """A tiny pixel-space Latte (the cache holds the clips: no VAE to write) on 8 synthetic clips."""
    return [
        *TINY,
        "autoencoder=identity",
        "data.train_clips=8",
        *CACHE_RUN,
        *extra,
    ]


class FakeDownloader:
    """Stands in for a bucket: ``download_file`` writes ``metadata`` (or raises ``error``) and records the call."""

    calls: ClassVar[list[tuple[str, ...]]] = []

    def __init__(self, metadata: dict[str, Any] | None, error: Exception | None = None) -> None:
        self.metadata, self.error = metadata, error

    def __call__(self, remote_dir: str, cache_dir: str, chunks: list, **kwargs: Any) -> FakeDownloader:
        self.calls.append(("get_downloader", remote_dir, cache_dir, str(chunks)))
        return self

    def download_file(self, remote: str, local: str) -> None:
        self.calls.append(("download_file", remote, local))
        if self.error is not None:
            raise self.error
        Path(local).write_text(json.dumps(self.metadata))


class ClientError(Exception):
    """botocore's ClientError, as boto3 raises it for a missing key (``response["Error"]["Code"]``)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code}) when calling the HeadObject operation")
        self.response = {"Error": {"Code": code}}


def _fake(monkeypatch: pytest.MonkeyPatch, fake: FakeDownloader) -> FakeDownloader:
    import litdata.streaming.downloader

    FakeDownloader.calls = []
    monkeypatch.setattr(litdata.streaming.downloader, "get_downloader", fake)
    return fake


def test_an_s3_cache_is_checked_through_litdatas_downloader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = compose_config(_overrides(), run_dir=tmp_path / "run")
    metadata = {"format": CACHE_FORMAT, "key": cache_key(cfg), "complete": True, "num_items": 8}
    _fake(monkeypatch, FakeDownloader(metadata))
    assert check_cache("s3://bucket/caches/ucf/", cfg)["num_items"] == 8
    (_, remote_dir, folder, chunks), (_, remote, local) = FakeDownloader.calls
    assert remote_dir == "s3://bucket/caches/ucf/" and chunks == "[]"
    assert remote == f"s3://bucket/caches/ucf/{METADATA_FILE}" and local == os.path.join(
        folder, METADATA_FILE
    )
    assert not Path(folder).exists()  # a temporary folder, removed
    # a key that differs is named as for a local cache
    other = compose_config(_overrides("data.resolution=8"), run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="s3://bucket/caches/ucf/") as error:
        check_cache("s3://bucket/caches/ucf/", other)
    assert error.value.key == "data.resolution"
    # a missing metadata file: the clear data.cache message
    _fake(monkeypatch, FakeDownloader(None, ClientError("404")))
    with pytest.raises(ConfigError, match="holds no precomputed cache") as error:
        check_cache("gs://bucket/nothing", cfg)
    assert error.value.key == "data.cache" and "upload that folder to 'gs://bucket/nothing'" in str(
        error.value
    )
    # any other failure (credentials, network) is reported with the downloader's error
    _fake(monkeypatch, FakeDownloader(None, ClientError("403")))
    with pytest.raises(ConfigError, match=r"could not fetch 's3://b/c/vidgen_cache\.json'.*403") as error:
        check_cache("s3://b/c", cfg)
    assert error.value.key == "data.cache"


def test_precompute_refuses_a_remote_out(tmp_path: Path) -> None:
    from vidgen.data.latent_cache import precompute

    cfg = compose_config(
        _overrides("precompute.out=s3://bucket/cache"), run_dir=tmp_path / "pre", config_name="precompute"
    )
    with pytest.raises(ConfigError, match="upload that folder") as error:
        precompute(cfg)
    assert error.value.key == "precompute.out" and not any(tmp_path.iterdir())


def _losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


@pytest.fixture
def chunk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LitData's chunk cache for remote datasets (``$LITDATA_CACHE_DIR``) in tmp_path, not the home folder."""
    import litdata.utilities.dataset_utilities

    folder = tmp_path / "chunks"
    monkeypatch.setattr(litdata.utilities.dataset_utilities, "_LITDATA_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def written_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A precomputed cache of the 8 clips (one litdata worker)."""
    from vidgen.data.latent_cache import precompute

    base = tmp_path_factory.mktemp("remote")
    cache = base / "cache"
    precompute(
        compose_config(
            _overrides(
                f"precompute.out={cache}",
                "precompute.num_workers=1",
                "precompute.progress=false",
                "precompute.start_method=fork",
            ),
            run_dir=base / "pre",
            config_name="precompute",
        )
    )
    return cache


def test_a_local_scheme_cache_streams_every_clip(
    written_cache: Path, tmp_path: Path, chunk_cache: Path
) -> None:
    """``data.cache=local:<dir>`` (LitData's remote-style local folder, read through its downloader like a
    bucket): the key check passes and the training loader streams every clip from the path as given."""
    from vidgen.data.cached_datamodule import build_datamodule

    remote = f"local:{written_cache}"
    cfg: DictConfig = compose_config(_overrides(f"data.cache={remote}"), run_dir=tmp_path / "run")
    datamodule = build_datamodule(cfg)
    assert datamodule.cache_dir == remote  # unchanged, not made a Path
    indices = [int(i) for batch in datamodule.train_dataloader() for i in batch["index"]]
    assert sorted(indices) == list(range(8))
    assert any(chunk_cache.rglob("chunk-*.bin"))  # LitData copied the shards it read into its chunk cache
    (written_cache / METADATA_FILE).rename(tmp_path / METADATA_FILE)
    try:
        with pytest.raises(ConfigError, match="holds no precomputed cache") as error:
            build_datamodule(cfg)
        assert error.value.key == "data.cache" and remote in str(error.value)
    finally:
        (tmp_path / METADATA_FILE).rename(written_cache / METADATA_FILE)


@pytest.mark.slow
def test_training_from_a_local_scheme_cache_gives_the_folders_losses(
    written_cache: Path, tmp_path: Path, chunk_cache: Path
) -> None:
    from vidgen.lit.training import train

    runs = {}
    for name, where in (("folder", str(written_cache)), ("local", f"local:{written_cache}")):
        runs[name] = tmp_path / name
        train(compose_config(_overrides(f"data.cache={where}", "trainer.max_steps=3"), run_dir=runs[name]))
    assert _losses(runs["local"]) == _losses(runs["folder"]) and sorted(_losses(runs["local"])) == [0, 1, 2]
