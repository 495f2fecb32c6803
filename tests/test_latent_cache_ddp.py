"""Training from a precomputed cache under real DDP (``trainer=ddp_spawn``: 2 CPU processes, gloo).

tests/test_latent_cache.py checks LitData's rank sharding of the cache loader with a simulated distributed env
in one process; here two real ranks train from the cache. A tiny VAE's latents of 24 synthetic clips are
precomputed (``precompute.start_method=fork``), then a 2 x batch 2 run trains 8 steps: epoch 0 is steps 0-5,
steps 6-7 start epoch 1. A :class:`~tests.aligned_training.StepRecorder` (pickled to the spawned workers)
writes each rank's cached ``index`` field and loss per step. Checked: in every step the ranks read disjoint
clips; over epoch 0 each rank reads 12 distinct clips and together they are the cache exactly once; epoch 1
is a new shuffle, again disjoint; the run reaches max_steps. Then a second run resumes from the run's mid-epoch
checkpoint (step 3, written by rank 0 alone, so rank 1's loader position comes from rank 0's loader state) and
each rank continues with exactly the clips and losses the uninterrupted run had at steps 3-7.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aligned_training import read_records, recorder_overrides
from tests.conftest import TINY, compose_config
from tests.latent_cache_helpers import write_tiny_vae

pytestmark = pytest.mark.multiprocess  # precompute (forked workers) + two 2-process spawned runs

NUM_CLIPS, PER_RANK, WORLD = 24, 2, 2
EPOCH_STEPS = NUM_CLIPS // (PER_RANK * WORLD)  # 6
RECORDER = "tests.aligned_training.StepRecorder"


def _overrides(vae: Path, *extra: str) -> list[str]:
    return [
        *TINY,
        "autoencoder=sd_vae",
        f"autoencoder.path={vae}",
        "autoencoder.downsample=2",
        f"data.train_clips={NUM_CLIPS}",
        "conditioner=class",
        "conditioner.num_classes=21",  # the synthetic data's shape x motion classes
        "samples.num_videos=0",
        "samples.final_num_videos=0",
        *extra,
    ]


def _train(overrides: list[str], run_dir: Path, ranks: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from vidgen.lit.training import train

    cfg = compose_config([*overrides, *recorder_overrides(RECORDER, ranks)], run_dir=run_dir)
    summary = train(cfg)
    return summary, read_records(ranks, WORLD)


def test_two_ddp_ranks_split_the_cache_exactly_and_resume_mid_epoch(tmp_path: Path) -> None:
    from vidgen.data.latent_cache import precompute

    vae = write_tiny_vae(tmp_path / "vae")
    cache = tmp_path / "cache"
    written = precompute(
        compose_config(
            _overrides(
                vae,
                f"precompute.out={cache}",
                "precompute.num_workers=2",
                "precompute.chunk_bytes=20kb",  # several chunks, so LitData has chunks to deal out to the ranks
                "precompute.start_method=fork",
                "precompute.progress=false",
            ),
            run_dir=tmp_path / "pre",
            config_name="precompute",
        )
    )
    assert written["complete"] and written["num_items"] == NUM_CLIPS
    assert len(list(cache.glob("chunk-*.bin"))) > WORLD

    overrides = _overrides(vae, f"data.cache={cache}", "trainer=ddp_spawn", f"data.batch_size={PER_RANK}")
    summary, records = _train([*overrides, "trainer.max_steps=8"], tmp_path / "straight", tmp_path / "ranks")
    assert summary["global_step"] == 8 and not summary["interrupted"]
    assert all(r["global_step"] == 8 for r in records)
    assert all([s["step"] for s in r["steps"]] == list(range(8)) for r in records)
    batches = [[s["index"] for s in r["steps"]] for r in records]  # batches[rank][step] -> cached indices
    for step in range(8):
        a, b = batches[0][step], batches[1][step]
        assert len(a) == len(b) == PER_RANK and not set(a) & set(b), f"step {step}: ranks overlap {a} {b}"
    epoch0 = [[i for batch in rank[:EPOCH_STEPS] for i in batch] for rank in batches]
    # each rank: its own 12 distinct clips; both ranks: the cache exactly once
    assert all(len(shard) == len(set(shard)) == NUM_CLIPS // WORLD for shard in epoch0)
    assert sorted(epoch0[0] + epoch0[1]) == list(range(NUM_CLIPS))
    # epoch 1 starts a new shuffle (seeded by data.seed and the epoch), still disjoint across ranks
    epoch1 = [[i for batch in rank[EPOCH_STEPS:] for i in batch] for rank in batches]
    assert len(set(epoch1[0] + epoch1[1])) == 2 * PER_RANK * WORLD
    assert [rank[:2] for rank in batches] != [rank[EPOCH_STEPS:] for rank in batches]

    # resume from the mid-epoch checkpoint of step 3: every rank continues with the uninterrupted run's clips
    middle = tmp_path / "straight" / "checkpoints" / "step0000003.ckpt"
    summary, resumed = _train(
        [*overrides, "trainer.max_steps=8", f"ckpt_path={middle}"], tmp_path / "resumed", tmp_path / "ranks2"
    )
    assert summary["global_step"] == 8
    for rank in range(WORLD):
        tail = resumed[rank]["steps"]
        assert [s["step"] for s in tail] == list(range(3, 8))
        assert [s["index"] for s in tail] == batches[rank][3:], f"rank {rank} resumed on other clips"
        assert [s["loss"] for s in tail] == [s["loss"] for s in records[rank]["steps"][3:]]
