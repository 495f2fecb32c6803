"""vidgen.evaluate end to end on tiny settings: from a checkpoint (subprocess) and from a folder of .mp4s,
and evaluation at the end of training; reading a folder of .png images (text-to-image samples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import QUICK_CLASSIFIER, TINY, compose_config
from tests.test_cli import run_module
from vidgen.config.errors import ConfigError
from vidgen.io.samples import write_samples
from vidgen.io.video import video_to_uint8
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.training import train
from vidgen.metrics.clip_sources import check_fake_folder, fake_from_folder, sample_files
from vidgen.metrics.evaluation_job import run_evaluation

# few clips and the quickly trained classifier of the training run's end-of-training evaluation (its cache)
QUICK = ["num_real=16", "num_fake=8", "batch_size=8", QUICK_CLASSIFIER]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny trained run, evaluated at the end of training, with a shared cache for the classifier."""
    root = tmp_path_factory.mktemp("evaluate")
    cache = root / "cache"
    run_dir = root / "run"
    summary = train(
        compose_config(
            [
                *TINY,
                "trainer.max_steps=3",
                "evaluation.at_end=true",
                "evaluation.num_real=16",
                "evaluation.num_fake=8",
                QUICK_CLASSIFIER,
                f"paths.cache_dir={cache}",
            ],
            run_dir=run_dir,
        )
    )
    return {"run_dir": run_dir, "cache": cache, "summary": summary}


def test_evaluation_at_the_end_of_training(trained: dict) -> None:
    result = json.loads((trained["run_dir"] / "metrics.json").read_text())
    values = result["metrics"]
    assert {
        "synthetic_fvd",
        "synthetic_structure/object_presence",
        "synthetic_structure/motion_consistency",
    } <= set(values)
    assert values["synthetic_fvd"] > 0 and 0 <= values["synthetic_structure/object_presence"] <= 1
    assert result["clips"]["fake"] == {"synthetic_fvd": 8, "synthetic_structure": 8}
    assert result["clips"]["real"] == {"synthetic_fvd": 16}
    assert trained["summary"]["evaluation"]["synthetic_fvd"] == values["synthetic_fvd"]


def test_evaluate_cli_from_checkpoint_writes_json_and_reuses_the_cache(trained: dict, tmp_path: Path) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    out = tmp_path / "metrics.json"
    args = [
        f"ckpt_path={ckpt}",
        *QUICK,
        f"paths.cache_dir={trained['cache']}",
        f"output={out}",
        "sampler=ddim",
        "sampler.steps=3",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_module("vidgen.evaluate", args, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["metrics"]["synthetic_fvd"] > 0
    # the real statistics of the same data and protocol were cached by the end-of-training evaluation
    assert report["cache"]["synthetic_fvd"].startswith("hit")
    assert "synthetic_fvd" in result.stdout


def test_evaluate_a_folder_of_mp4s_against_a_real_folder(trained: dict, tmp_path: Path) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    fake = tmp_path / "fake"
    sample(
        compose_config(
            [
                f"ckpt_path={ckpt}",
                "num_videos=4",
                "sampler=ddim",
                "sampler.steps=2",
                "upscale=1",
                f"out_dir={fake}",
            ],
            run_dir=tmp_path / "s",
            config_name="sample",
        )
    )
    cfg = compose_config(
        [
            f"fake_dir={fake}",
            "metrics=synthetic",
            "data=synthetic",
            "data.num_frames=4",
            "data.resolution=16",
            # the training run's clips: data=<name> here is the data config without the demo recipe's values
            "data.object_size=[0.45,0.55]",
            "num_real=8",
            QUICK_CLASSIFIER,
            f"paths.cache_dir={trained['cache']}",
        ],
        run_dir=tmp_path / "e",
        config_name="evaluate",
    )
    report = run_evaluation(cfg)
    assert report["clips"]["fake"]["synthetic_structure"] == 4  # grid.mp4 is not a sample
    assert report["metrics"]["synthetic_fvd"] > 0


def test_missing_metric_weights_fail_before_sampling(trained: dict, tmp_path: Path) -> None:
    ckpt = trained["run_dir"] / "checkpoints" / "last.ckpt"
    args = [
        f"ckpt_path={ckpt}",
        "metrics=[fvd]",
        f"metrics.fvd.weights={tmp_path / 'i3d_torchscript.pt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = run_module("vidgen.evaluate", args, timeout=300)
    assert result.returncode == 2
    assert "i3d_torchscript.pt" in result.stderr and "fvd" in result.stderr
    assert "generating" not in result.stderr  # nothing was sampled


def test_real_statistics_cache_key_ignores_loader_and_joint_training_settings() -> None:
    """Runs that read the same real clips share one cache entry: batch size, workers and the image frames
    appended to training clips (data.joint_image_frames) do not change what an evaluation reads."""
    from vidgen.metrics.evaluation import dataset_key

    data = {"_target_": "x", "name": "synthetic", "num_frames": 8, "resolution": 16, "frame_stride": 1}
    base = dataset_key(data, None)
    assert dataset_key({**data, "batch_size": 64, "num_workers": 3, "joint_image_frames": 4}, None) == base
    assert dataset_key({**data, "frame_stride": 2}, None) != base
    assert dataset_key(data, "/some/folder") == {"real_dir": str(Path("/some/folder").resolve())}


def test_a_folder_of_png_images_reads_as_one_frame_clips(tmp_path: Path) -> None:
    images = torch.linspace(-1, 1, 3 * 3 * 1 * 8 * 6).reshape(3, 3, 1, 8, 6)  # (N, C, F=1, H, W)
    folder = tmp_path / "t2i"
    written = write_samples(folder, images)
    assert [p.suffix for p in written] == [".png"] * 4  # 3 samples and the grid
    captions = {f"sample_{i:03d}.png": f"caption {i}" for i in range(3)}
    (folder / "conditions.json").write_text(json.dumps({"captions": captions}))
    batches = list(fake_from_folder(folder, batch_size=2))
    assert [b["video"].shape for b in batches] == [
        (2, 1, 8, 6, 3),
        (1, 1, 8, 6, 3),
    ]  # the grid is not a sample
    videos = torch.cat([b["video"] for b in batches])
    assert torch.equal(videos, torch.stack([video_to_uint8(image) for image in images]))
    assert [c for b in batches for c in b["caption"]] == ["caption 0", "caption 1", "caption 2"]


def test_a_fake_folder_of_both_kinds_or_neither_names_fake_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fake_dir: no \.mp4 videos or \.png images"):
        sample_files(tmp_path)
    write_samples(tmp_path, torch.zeros(2, 3, 1, 8, 8))
    write_samples(tmp_path, torch.zeros(1, 3, 4, 8, 8))
    with pytest.raises(ConfigError, match=r"both \.mp4 videos \(1\) and \.png images \(2\)"):
        sample_files(tmp_path)


def test_fake_sample_shapes_are_checked_against_the_real_clips_before_any_metric(tmp_path: Path) -> None:
    clips = torch.rand(3, 3, 4, 8, 8) * 2 - 1  # (N, C, F, H, W)
    native, upscaled, images = tmp_path / "native", tmp_path / "upscaled", tmp_path / "images"
    write_samples(native, clips)
    write_samples(upscaled, clips, scale=2)  # as vidgen.sample writes small clips for viewing
    write_samples(images, clips[:, :, :1])
    assert check_fake_folder(native, (4, 8, 8)) == 3  # the grid is not a sample
    assert check_fake_folder(upscaled, None) == 3  # nothing to compare with: one shape is enough
    assert check_fake_folder(images, (4, 8, 8)) == 3  # one-frame images score against real frames
    with pytest.raises(ConfigError, match=r"fake_dir: .* are 4x16x16 .* real clips are 4x8x8 .*upscale=1"):
        check_fake_folder(upscaled, (4, 8, 8))
    with pytest.raises(ConfigError, match=r"fake_dir: .* are 4x8x8 .* real clips are 16x8x8"):
        check_fake_folder(native, (16, 8, 8))
    with pytest.raises(ConfigError, match=r"fake_dir: .* are 1x8x8 .* real clips are 4x6x6"):
        check_fake_folder(images, (4, 6, 6))
    write_samples(native / "more", clips[:1, :, :2])
    (native / "more" / "sample_000.mp4").rename(native / "sample_009.mp4")
    with pytest.raises(
        ConfigError, match=r"fake_dir: '.*sample_009\.mp4' is 2x8x8 but 'sample_000\.mp4' is 4x8x8"
    ):
        check_fake_folder(native, (4, 8, 8))


def test_evaluate_refuses_upscaled_samples_before_reading_real_clips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vidgen.metrics.evaluation_job as job

    def no_real_clips(*args: object, **kwargs: object) -> None:
        raise AssertionError("real clips were read before the samples' shapes were checked")

    monkeypatch.setattr(job, "real_from_dataset", no_real_clips)
    fake = tmp_path / "fake"
    write_samples(fake, torch.zeros(2, 3, 4, 16, 16), scale=8)  # vidgen.sample's default for 16 px clips
    cfg = compose_config(
        [
            f"fake_dir={fake}",
            "metrics=synthetic",
            "data=synthetic",
            "data.num_frames=4",
            "data.resolution=16",
        ],
        run_dir=tmp_path / "e",
        config_name="evaluate",
    )
    with pytest.raises(ConfigError, match=r"fake_dir: .* are 4x128x128 .* real clips are 4x16x16"):
        run_evaluation(cfg)
