"""Precomputed latent caches: the SD VAE's posterior split, the cache key, cached batches giving the losses of
encoded ones, precompute -> train from the cache -> exact resume, and an interrupted precompute resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import default_collate

from tests.conftest import TINY, compose_config
from tests.latent_cache_helpers import (
    CACHE_RUN,
    FAIL_AT_ENV,
    LOG_ENV,
    LoggingEncoder,
    logged_indices,
    write_tiny_vae,
)
from tests.tiny_open_clip import TEXT_WIDTH, forbid_open_clip_downloads, save_tiny_open_clip
from vidgen.autoencoders import build_autoencoder
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.cache_key import CACHE_FORMAT, METADATA_FILE, cache_key, check_cache, write_metadata
from vidgen.data.latent_cache import CacheEncoder, encoder_config, precompute
from vidgen.lit.build import build_module
from vidgen.lit.seeding import step_generator


@pytest.fixture(scope="module")
def vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_vae(tmp_path_factory.mktemp("vae") / "vae")


def _overrides(vae: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "autoencoder=sd_vae",
        f"autoencoder.path={vae}",
        "autoencoder.downsample=2",
        "autoencoder.micro_batch=3",  # chunks that split clips: the draws must still match
        "data.train_clips=24",
        *CACHE_RUN,
        *extra,
    ]


def test_sd_vae_encode_is_its_posterior_sampled_as_diffusers_samples(vae: Path) -> None:
    ae = build_autoencoder("sd_vae", 4, 2, 0.5, path=str(vae), sample_posterior=True, micro_batch=3)
    video = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    encoded = ae.encode(video, generator=torch.Generator().manual_seed(5))
    mean, std = ae.posterior(video)
    assert mean.shape == std.shape == (2, 4, 4, 8, 8)
    cached = ae.latents_from_posterior(mean.clone(), std.clone(), torch.Generator().manual_seed(5))
    assert torch.equal(encoded, cached)
    # diffusers' own sampling, chunk by chunk of 3 frames, is what encode() draws
    frames = video.permute(0, 2, 1, 3, 4).reshape(8, 3, 16, 16)
    generator = torch.Generator().manual_seed(5)
    reference = torch.cat([ae.vae.encode(c).latent_dist.sample(generator) for c in frames.split(3)]) * 0.5
    assert torch.equal(encoded.permute(0, 2, 1, 3, 4).reshape(8, 4, 8, 8), reference)


def test_a_cache_of_another_config_is_refused_naming_the_key(vae: Path, tmp_path: Path) -> None:
    cfg = compose_config(_overrides(vae), run_dir=tmp_path / "run")
    key = cache_key(cfg)
    assert key["data.resolution"] == 16 and key["autoencoder.weights"] and "data.batch_size" not in key
    cache = tmp_path / "cache"
    cache.mkdir()
    metadata = {"format": CACHE_FORMAT, "key": key, "complete": True, "num_items": 24}
    write_metadata(cache, metadata)
    assert check_cache(cache, cfg)["num_items"] == 24
    # loader-only keys may differ
    check_cache(cache, compose_config(_overrides(vae, "data.batch_size=2"), run_dir=tmp_path / "run"))
    for override, name in [
        ("data.num_frames=8", "data.num_frames"),
        ("data.frame_stride=2", "data.frame_stride"),
        ("autoencoder.scaling_factor=0.13025", "autoencoder.scaling_factor"),
    ]:
        other = compose_config(_overrides(vae, override), run_dir=tmp_path / "run")
        with pytest.raises(ConfigError) as error:
            check_cache(cache, other)
        assert error.value.key == name and str(cache) in str(error.value)
    (vae / "diffusion_pytorch_model.safetensors").write_bytes(b"another VAE")  # re-saved weights
    try:
        with pytest.raises(ConfigError) as error:
            check_cache(cache, cfg)
        assert error.value.key == "autoencoder.weights"
    finally:
        write_tiny_vae(vae)
    write_metadata(cache, {**metadata, "complete": False})
    with pytest.raises(ConfigError, match="incomplete"):
        check_cache(cache, cfg)
    with pytest.raises(ConfigError, match="not a path LitData streams from") as error:
        check_cache("http://example.invalid/cache", cfg)
    assert error.value.key == "data.cache"
    (cache / METADATA_FILE).unlink()
    with pytest.raises(ConfigError, match="no precomputed cache") as error:
        check_cache(cache, cfg)
    assert error.value.key == "data.cache"


def test_the_data_module_keeps_data_cache(vae: Path, tmp_path: Path) -> None:
    """instantiate_node passes ``data.cache`` to the module (every data module takes it) instead of
    stripping it; build_datamodule is what trains from it."""
    cfg = compose_config(_overrides(vae, f"data.cache={tmp_path / 'cache'}"), run_dir=tmp_path / "run")
    assert instantiate_node(cfg.data).cache == str(tmp_path / "cache")
    assert instantiate_node(compose_config(_overrides(vae), run_dir=tmp_path / "run").data).cache is None


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


def _text(tiny_clip: tuple[Path, Path]) -> list[str]:
    checkpoint, config = tiny_clip
    return [
        "conditioner=text",
        f"conditioner.path={checkpoint}",
        f"conditioner.model_name={config}",
        f"conditioner.text_dim={TEXT_WIDTH}",
        "conditioner.max_length=16",
        "conditioner.num_classes=0",
        "conditioner.drop_prob=0.5",  # some captions of the batch dropped: from the cached states too
    ]


def _encoder_config(cfg: DictConfig) -> dict:
    return encoder_config(cfg)


@pytest.mark.parametrize("condition", ["class", "text"])
def test_a_cached_batch_gives_the_losses_of_the_encoded_batch(
    condition: str, vae: Path, tiny_clip: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a worker writes (CacheEncoder) fed to the training step gives the losses of encoding the same
    clips inside the step: same latents, same text states, same draws."""
    forbid_open_clip_downloads(monkeypatch)
    extra = _text(tiny_clip) if condition == "text" else []
    cfg = compose_config(_overrides(vae, *extra), run_dir=tmp_path / "run")
    encoder = CacheEncoder(_encoder_config(cfg))
    cached = default_collate([encoder(i) for i in (3, 0, 7, 5)])
    dataset = encoder._build()[0]
    encoded = default_collate([dataset[i] for i in (3, 0, 7, 5)])
    assert cached["latent_std"].shape == (4, 4, 4, 8, 8) and "video" not in cached
    assert cached["label"].tolist() == encoded["label"].tolist() and cached["caption"] == encoded["caption"]
    assert cached["source"][0] == "synthetic:train:3" and cached["frame_indices"][0].tolist() == [0, 1, 2, 3]
    assert ("text" in cached) == (condition == "text")
    module = build_module(cfg)
    losses = [
        module._diffusion_losses(module.denoiser, batch, step_generator(0, 4, 0, 0), train=True)
        for batch in (cached, encoded)
    ]
    for name in losses[0]:
        torch.testing.assert_close(losses[0][name], losses[1][name], rtol=0, atol=0)


def test_bench_times_the_loaders_and_the_cached_step(vae: Path, tmp_path: Path) -> None:
    from vidgen.benchmark.loader import cached_batch, measure_cached_training, measure_loaders

    cfg = compose_config(
        _overrides(vae, "bench.loader_workers=[0]"), run_dir=tmp_path / "run", config_name="bench"
    )
    rows = measure_loaders(cfg, batches=2)
    assert list(rows) == ["generated, 0 workers"] and rows["generated, 0 workers"] > 0
    module = build_module(cfg)
    batch = default_collate([instantiate_node(cfg.data).train_set[i] for i in range(4)])
    cached = cached_batch(module, batch)
    assert "video" not in cached and cached["latent_mean"].shape == cached["latent_std"].shape == (
        4,
        4,
        4,
        8,
        8,
    )
    encoded_speed, cached_speed = measure_cached_training(module, batch, steps=1, warmup=0)
    assert encoded_speed > 0 and cached_speed > 0


def _train_losses(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "csv" / "metrics.csv") as handle:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(handle) if r.get("train/loss")}


@pytest.mark.slow
def test_precompute_then_train_from_the_cache_resumes_exactly(vae: Path, tmp_path: Path) -> None:
    from vidgen.lit.training import train

    cache = tmp_path / "cache"
    written = precompute(
        compose_config(
            _overrides(
                vae, f"precompute.out={cache}", "precompute.num_workers=2", "precompute.chunk_bytes=20kb"
            ),
            run_dir=tmp_path / "pre",
            config_name="precompute",
        )
    )
    assert written["complete"] and written["num_items"] == 24 and written["latent_shape"] == [4, 4, 8, 8]
    assert {"latent_mean", "latent_std", "label", "caption", "source", "frame_indices"} <= set(
        written["fields"]
    )
    overrides = _overrides(vae, f"data.cache={cache}")
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    train(compose_config([*overrides, "trainer.max_steps=8"], run_dir=straight))  # crosses the 6-batch epoch
    train(compose_config([*overrides, "trainer.max_steps=3"], run_dir=first))
    last = first / "checkpoints" / "last.ckpt"
    train(compose_config([*overrides, "trainer.max_steps=8", f"ckpt_path={last}"], run_dir=resumed))
    reference, head, tail = _train_losses(straight), _train_losses(first), _train_losses(resumed)
    assert sorted(reference) == list(range(8)) and sorted(tail) == list(range(3, 8))
    assert all(head[step] == reference[step] for step in range(3))
    for step in range(3, 8):
        assert tail[step] == reference[step], f"step {step}: {tail[step]} != {reference[step]}"
    # two ranks: each streams its own half of the epoch (LitData's rank sharding of the cache loader)
    from litdata.utilities.env import _DistributedEnv

    from vidgen.data.cached_datamodule import build_datamodule

    shards = []
    for rank in (0, 1):
        loader = build_datamodule(compose_config(overrides, run_dir=tmp_path / "ranks")).train_dataloader()
        loader.dataset.distributed_env = _DistributedEnv(world_size=2, global_rank=rank, num_nodes=1)
        shards.append([int(i) for batch in loader for i in batch["index"]])
    assert len(shards[0]) == len(shards[1]) == 12 and sorted(shards[0] + shards[1]) == list(range(24))
    # a config the cache was not written for is refused before training, naming the key
    with pytest.raises(ConfigError) as error:
        train(compose_config([*overrides, "data.resolution=32"], run_dir=tmp_path / "other"))
    assert error.value.key == "data.resolution"


@pytest.mark.slow
def test_an_interrupted_precompute_resumes_where_it_stopped(
    vae: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "fail").touch()
    monkeypatch.setenv(LOG_ENV, str(log))
    monkeypatch.setenv(FAIL_AT_ENV, "9")  # worker 0 encodes clips 0..11 in order, chunks of 2 clips
    cache = tmp_path / "cache"
    cfg = compose_config(
        _overrides(vae, f"precompute.out={cache}", "precompute.num_workers=2", "precompute.chunk_bytes=10kb"),
        run_dir=tmp_path / "pre",
        config_name="precompute",
    )
    with pytest.raises(RuntimeError, match="run the same command again"):
        precompute(cfg, encoder=LoggingEncoder)
    first = logged_indices(log)
    assert 9 not in first and not json.loads((cache / METADATA_FILE).read_text())["complete"]
    with pytest.raises(ConfigError, match="incomplete"):
        check_cache(cache, compose_config(_overrides(vae), run_dir=tmp_path / "run"))
    for path in log.iterdir():
        path.unlink()
    written = precompute(cfg, encoder=LoggingEncoder)
    second = logged_indices(log)
    assert written["complete"] and written["num_items"] == 24
    assert 9 in second and len(second) < 24 and set(range(8)).isdisjoint(second)  # finished chunks kept
    import litdata

    dataset = litdata.StreamingDataset(str(cache))
    items = {int(dataset[i]["index"]): dataset[i] for i in range(len(dataset))}
    assert sorted(items) == list(range(24))
    reference = CacheEncoder(
        {name: OmegaConf.to_container(cfg[name], resolve=True) for name in ("data", "autoencoder")}
    )
    for index in (0, 9, 23):
        assert torch.equal(items[index]["latent_mean"], reference(index)["latent_mean"])
    assert precompute(cfg)["seconds"] == 0.0  # complete: nothing to do


#: the latent U-Nets take text or nothing (the text path is covered by the Latte test above)
NO_LABELS = ["conditioner=none", "conditioner.num_classes=0"]
#: every model family on a cache: pixel space (the cache holds the clips) or the tiny VAE's latents
FAMILIES = {
    "vdm_pixels": ["model=vdm_unet3d", "diffusion=vdm", "autoencoder=identity"],
    "latent_shift": ["model=latent_shift", "diffusion=sd", "diffusion.prediction=eps", *NO_LABELS],
    "latent_vdm": ["model=latent_vdm", "diffusion=sd", "diffusion.prediction=eps", *NO_LABELS],
    "cmd_stage2": ["model=cmd", "cmd.autoencoder_ckpt=untrained", "task_name=bench"],
    "cmd_stage2_pixels": [
        "model=cmd",
        "cmd.autoencoder_ckpt=untrained",
        "task_name=bench",
        "autoencoder=identity",
    ],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_model_family_gets_the_same_losses_from_the_cache(
    family: str, vae: Path, tmp_path: Path
) -> None:
    overrides = [o for o in _overrides(vae, *FAMILIES[family]) if not o.startswith("model.")]
    if "autoencoder=identity" in overrides:  # pixel space: the cache holds the clips themselves
        overrides = [o for o in overrides if not o.startswith(("autoencoder.", "autoencoder=sd_vae"))]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    encoder = CacheEncoder(_encoder_config(cfg))
    cached = default_collate([encoder(i) for i in (2, 6)])
    encoded = default_collate([encoder._build()[0][i] for i in (2, 6)])
    assert ("latent_std" in cached) == (cfg.autoencoder.kind == "sd_vae")
    # CMD on pixels: the content frame and motion latent are cached; on sampled SD latents they cannot be
    assert ("cmd_content" in cached) == (family == "cmd_stage2_pixels")
    assert ("cmd.autoencoder_weights" in cache_key(cfg)) == (family == "cmd_stage2_pixels")
    module = build_module(cfg)
    losses = [
        module._diffusion_losses(module.denoiser, batch, step_generator(0, 1, 0, 0), train=True)
        for batch in (cached, encoded)
    ]
    # equal up to float rounding: the cache encodes one clip at a time, the step a batch, and the convolution
    # kernels are not batch-invariant bit for bit (1 ulp seen on the VAE's latents, depending on what ran
    # before in the process); a wrong latent, scale or text state moves a loss by far more
    for name in losses[0]:
        torch.testing.assert_close(losses[0][name], losses[1][name], rtol=1e-5, atol=1e-6)
