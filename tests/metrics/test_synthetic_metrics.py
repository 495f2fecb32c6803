"""In-domain metrics of the synthetic data: the self-trained classifier, Synthetic FVD, class accuracy and the
structure checks. Real synthetic clips must beat noise and shuffled frames by wide margins."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import vidgen.metrics.synthetic.classifier as classifier_module
from tests.conftest import compose_config
from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.io.video import video_to_uint8
from vidgen.metrics.synthetic import (
    StructureAnalyzer,
    SyntheticClassAccuracy,
    SyntheticFVD,
    SyntheticStructure,
    load_or_train_classifier,
    synthetic_clips,
    train_synthetic_classifier,
    videos_to_input,
)
from vidgen.metrics.synthetic.classifier import generator_kwargs, synthetic_dataset

FRAMES, RES, N = 8, 16, 256
#: a few-second training run, for the determinism and cache checks (not accurate)
QUICK = {"steps": 12, "batch_size": 8, "eval_clips": 16}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A fresh cache holding the default-settings classifier at the demo shape (trained once, ~20 s)."""
    folder = tmp_path_factory.mktemp("synthetic_cache")
    _, report = load_or_train_classifier(folder, FRAMES, RES)
    assert report["cache"] == "trained"
    return folder


@pytest.fixture(scope="module")
def clips() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Real val clips, other real clips (test split), those with shuffled frames, and uniform noise."""
    real = synthetic_clips(N, FRAMES, RES, "val")
    other_videos, other_labels = synthetic_clips(N, FRAMES, RES, "test")
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack([v[torch.randperm(FRAMES, generator=g)] for v in other_videos])
    noise = torch.randint(0, 256, other_videos.shape, dtype=torch.uint8, generator=g)
    return {
        "real": real,
        "other": (other_videos, other_labels),
        "shuffled": (shuffled, other_labels),
        "noise": (noise, other_labels),
    }


# ------------------------------------------------------------------------------------------- classifier
def test_clips_match_video_to_uint8_and_input_conversion() -> None:
    videos, labels = synthetic_clips(3, FRAMES, RES, "val", start=5)
    dataset = SyntheticVideoDataset(num_clips=8, num_frames=FRAMES, resolution=RES, split="val")
    for i in range(3):
        item = dataset[5 + i]
        assert torch.equal(videos[i], video_to_uint8(item["video"]))
        assert labels[i] == item["label"]
    x = videos_to_input(videos, FRAMES, RES)
    assert x.shape == (3, 3, FRAMES, RES, RES) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert torch.allclose(x[0], dataset[5]["video"], atol=1 / 255)


def test_training_is_deterministic_and_seeded() -> None:
    threads = torch.get_num_threads()
    a, report = train_synthetic_classifier(FRAMES, RES, seed=3, **QUICK)
    assert torch.get_num_threads() == threads  # training uses one thread and restores the setting
    b, _ = train_synthetic_classifier(FRAMES, RES, seed=3, **QUICK)
    c, _ = train_synthetic_classifier(FRAMES, RES, seed=4, **QUICK)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert any(not torch.equal(t, c.state_dict()[n]) for n, t in a.state_dict().items())
    assert report["settings"]["training"]["steps"] == QUICK["steps"]


def test_cache_hit_returns_the_same_weights_without_training(tmp_path, monkeypatch) -> None:
    first, report = load_or_train_classifier(tmp_path, FRAMES, RES, seed=1, **QUICK)
    assert report["cache"] == "trained"
    path = tmp_path / "synthetic_classifier"
    assert len(list(path.glob("*.pt"))) == 1 and len(list(path.glob("*.json"))) == 1
    assert json.loads(next(path.glob("*.json")).read_text())["settings"]["seed"] == 1

    def refuse(*args, **kwargs):
        raise AssertionError("retrained although the classifier is cached")

    monkeypatch.setattr(classifier_module, "train_synthetic_classifier", refuse)
    second, hit = load_or_train_classifier(tmp_path, FRAMES, RES, seed=1, **QUICK)
    assert hit["cache"] == "hit" and hit["path"] == report["path"]
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    # different settings are a different entry (here it would have to train, which is refused)
    with pytest.raises(AssertionError, match="retrained"):
        load_or_train_classifier(tmp_path, FRAMES, RES, seed=2, **QUICK)


def test_classifier_reaches_high_held_out_accuracy(cache_dir) -> None:
    model, report = load_or_train_classifier(cache_dir, FRAMES, RES)
    assert report["cache"] == "hit"
    assert report["val_accuracy"] >= 0.9, report
    # and on other held-out clips, through the public embedding
    videos, labels = synthetic_clips(210, FRAMES, RES, "val", start=1000)
    features, logits = model.embed(videos)
    assert features.shape == (210, model.feature_dim) and logits.shape == (210, 21)
    assert float((logits.argmax(dim=1) == labels).float().mean()) >= 0.9


# ---------------------------------------------------------------------------------------------- metrics
def _fvd(cache_dir, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = SyntheticFVD(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
    metric.update_real(real[: N // 2])
    metric.update_real(real[N // 2 :])
    metric.update_fake(fake)
    return metric.compute()["synthetic_fvd"]


def test_synthetic_fvd_separates_real_from_noise_and_shuffled_frames(cache_dir, clips) -> None:
    real = clips["real"][0]
    same = _fvd(cache_dir, real, clips["other"][0])
    shuffled = _fvd(cache_dir, real, clips["shuffled"][0])
    noise = _fvd(cache_dir, real, clips["noise"][0])
    assert 0 <= same < shuffled / 5, (same, shuffled)
    assert same < noise / 10, (same, noise)
    assert shuffled < noise


def test_synthetic_fvd_real_statistics_round_trip(cache_dir, clips) -> None:
    metric = SyntheticFVD(num_real=N, num_fake=N, num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
    assert metric.num_real_wanted == N and metric.num_fake_wanted == N
    key = metric.real_cache_key()
    json.dumps(key)  # plain JSON
    assert key["metric"] == "synthetic_fvd" and len(key["weights_sha256"]) == 64
    assert key["classifier"]["num_frames"] == FRAMES and key["classifier"]["resolution"] == RES
    metric.update_real(clips["real"][0])
    state = metric.real_state()
    metric.update_fake(clips["other"][0])
    restored = SyntheticFVD(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
    restored.load_real_state({k: np.array(v) for k, v in state.items()})
    restored.update_fake(clips["other"][0])
    assert restored.compute() == pytest.approx(metric.compute())
    # the key needs the clip shape up front
    assert SyntheticFVD(cache_dir=cache_dir).real_cache_key() is None


def test_class_accuracy_real_vs_noise(cache_dir, clips) -> None:
    results = {}
    for name in ("real", "noise", "shuffled"):
        metric = SyntheticClassAccuracy(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
        assert not metric.needs_real
        videos, labels = clips[name]
        metric.update_fake(videos[:100], labels=labels[:100])
        metric.update_fake(videos[100:], labels=labels[100:].tolist())
        results[name] = metric.compute()
    assert results["real"]["class_accuracy"] >= 0.9, results
    assert results["real"]["class_accuracy/motion"] >= 0.9
    assert results["noise"]["class_accuracy"] <= 0.15, results  # chance is 1/21
    assert results["shuffled"]["class_accuracy"] <= 0.5, results
    metric = SyntheticClassAccuracy(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="class labels"):
        metric.update_fake(clips["real"][0][:4])
    with pytest.raises(ValueError, match="labels"):
        metric.update_fake(clips["real"][0][:4], labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no generated"):
        metric.compute()


def test_structure_real_noise_and_shuffled(clips) -> None:
    results = {}
    for name in ("other", "noise", "shuffled"):
        metric = SyntheticStructure()
        metric.update_fake(clips[name][0])
        results[name] = metric.compute()
    real, noise, shuffled = results["other"], results["noise"], results["shuffled"]
    key = "synthetic_structure/"
    assert real[key + "object_presence"] == 1.0 and real[key + "colour_match"] == 1.0, real
    assert real[key + "colour_constancy"] == 1.0, real
    assert real[key + "motion_consistency"] >= 0.98 and real[key + "trackable"] == 1.0, real
    assert real[key + "motion_residual_px"] < 0.1, real
    assert noise[key + "object_presence"] <= 0.05, noise
    assert noise[key + "motion_consistency"] <= 0.05, noise
    # frame metrics ignore frame order exactly; motion metrics catch it
    assert shuffled[key + "object_presence"] == real[key + "object_presence"]
    assert shuffled[key + "colour_match"] == real[key + "colour_match"]
    assert shuffled[key + "colour_constancy"] == real[key + "colour_constancy"]
    assert shuffled[key + "motion_consistency"] <= 0.35, shuffled  # static objects (1/7) stay consistent
    assert shuffled[key + "motion_residual_px"] >= 10 * real[key + "motion_residual_px"], shuffled


def test_structure_wrong_colours_and_blank_frames(clips) -> None:
    videos = clips["other"][0][:40].clone()
    recoloured = videos.clone()
    mask = (videos.float() - torch.tensor([8.0, 8.0, 12.0])).norm(dim=-1) > 60
    recoloured[mask] = torch.tensor([128, 128, 128], dtype=torch.uint8)  # grey: not a palette colour
    blank = videos.clone()
    blank[:, ::2] = torch.tensor([8, 8, 12], dtype=torch.uint8)  # every other frame empty
    results = {}
    for name, data in (("recoloured", recoloured), ("blank", blank)):
        metric = SyntheticStructure()
        metric.update_fake(data)
        results[name] = metric.compute()
    assert results["recoloured"]["synthetic_structure/colour_match"] == 0.0
    assert results["recoloured"]["synthetic_structure/object_presence"] == 1.0
    assert results["blank"]["synthetic_structure/object_presence"] == 0.5
    assert results["blank"]["synthetic_structure/motion_consistency"] == 0.0  # too few frames to track
    with pytest.raises(ValueError, match="no generated"):
        SyntheticStructure().compute()


def test_colour_constancy_catches_an_object_changing_palette_colour_part_way(clips) -> None:
    """The defect of the demo's grids: a cyan object turning white half-way. Every frame alone still shows a
    palette colour (``colour_match`` stays 1); ``colour_constancy`` drops to the share of the clip's most common
    colour, exactly."""
    videos, _ = clips["other"]
    generator = synthetic_dataset(N, FRAMES, RES, "test")
    cyan = [i for i in range(N) if generator.describe(i).objects[0].color_name == "cyan"][:6]
    assert len(cyan) >= 3, "test data lacks cyan clips"
    drifted = videos[cyan].clone()
    object_pixels = (drifted.float() - torch.tensor([20.0, 225.0, 235.0])).norm(dim=-1) < 30
    later = torch.zeros_like(object_pixels)
    later[:, 5:] = True  # frames 5-7 of 8 turn white
    drifted[object_pixels & later] = torch.tensor([245, 245, 245], dtype=torch.uint8)
    metric = SyntheticStructure()
    metric.update_fake(drifted)
    values = metric.compute()
    assert values["synthetic_structure/colour_match"] == 1.0
    assert values["synthetic_structure/colour_constancy"] == pytest.approx(5 / 8)
    # reset: the same clips unchanged are constant again
    metric = SyntheticStructure()
    metric.update_fake(videos[cyan])
    assert metric.compute()["synthetic_structure/colour_constancy"] == 1.0


def test_structure_reports_nan_when_nothing_is_found(clips) -> None:
    metric = SyntheticStructure()
    metric.update_fake(torch.full((4, FRAMES, RES, RES, 3), 8, dtype=torch.uint8))  # background only
    values = metric.compute()
    assert values["synthetic_structure/object_presence"] == 0.0
    assert math.isnan(values["synthetic_structure/colour_match"])
    assert values["synthetic_structure/colour_constancy"] == 0.0  # no object colour: not constant
    assert math.isnan(values["synthetic_structure/motion_residual_px"])
    assert values["synthetic_structure/motion_consistency"] == 0.0
    assert values["synthetic_structure/trackable"] == 0.0
    two_frames = SyntheticStructure()
    two_frames.update_fake(clips["other"][0][:4, :2].contiguous())
    assert set(two_frames.compute()) == {
        "synthetic_structure/object_presence",
        "synthetic_structure/colour_match",
        "synthetic_structure/colour_constancy",
    }  # motion needs >= 3 frames


def test_structure_several_objects_and_long_clips() -> None:
    videos, _ = synthetic_clips(60, FRAMES, RES, "val", data={"max_objects": 2})
    metric = SyntheticStructure(data={"max_objects": 2})
    metric.update_fake(videos)
    values = metric.compute()
    assert values["synthetic_structure/object_presence"] == 1.0
    assert values["synthetic_structure/colour_match"] >= 0.9
    assert values["synthetic_structure/colour_constancy"] >= 0.9  # 0.965: the main object can switch
    assert values["synthetic_structure/motion_consistency"] >= 0.85
    # 24 frames at 16 px: objects bounce off the walls, up to twice per axis
    long_videos, _ = synthetic_clips(40, 24, RES, "val")
    metric = SyntheticStructure()
    metric.update_fake(long_videos)
    assert metric.compute()["synthetic_structure/motion_consistency"] >= 0.95


@pytest.mark.parametrize("stride", [2, 4])
def test_structure_fits_real_clips_at_a_frame_stride(stride: int) -> None:
    """Every stride-th frame of the motion: real clips stay consistent when the metric knows the stride, and
    the stride-1 motion model rejects most of them (objects move ``stride`` times as far per frame)."""
    data = {"frame_stride": stride}
    videos, _ = synthetic_clips(60, FRAMES, RES, "val", data=data)
    aware, naive = SyntheticStructure(data=data), SyntheticStructure()
    aware.update_fake(videos)
    naive.update_fake(videos)
    consistency = "synthetic_structure/motion_consistency"
    assert aware.compute()[consistency] >= 0.95
    assert naive.compute()[consistency] <= 0.9  # measured 0.88 at stride 2, 0.18 at stride 4


def test_structure_fits_the_generator_motions_exactly() -> None:
    dataset = SyntheticVideoDataset(num_clips=80, num_frames=16, resolution=32, split="val")
    analyzer = StructureAnalyzer()
    for i in range(80):
        obj = dataset.describe(i).primary
        positions = obj.positions.numpy().astype(np.float64)
        half = obj.size / 2
        boxes = np.stack(
            [positions[:, 0] - half, positions[:, 0] + half, positions[:, 1] - half, positions[:, 1] + half],
            axis=1,
        ).round()
        residual, kind = analyzer.fit_track(np.arange(16.0), positions, boxes, 32)
        assert residual < 0.02, (i, obj.motion, residual)
        assert (kind == "circle") == (obj.motion == "circle") or obj.motion == "static"


# ------------------------------------------------------------------------------------------ input checks
@pytest.mark.parametrize(
    "bad",
    [
        torch.zeros(2, FRAMES, RES, RES, 3),  # float
        torch.zeros(2, 3, FRAMES, RES, RES, dtype=torch.uint8),  # channels first
        torch.zeros(FRAMES, RES, RES, 3, dtype=torch.uint8),  # no batch axis
        torch.zeros(2, FRAMES, RES, RES, 1, dtype=torch.uint8),  # one channel
        np.zeros((2, FRAMES, RES, RES, 3), dtype=np.uint8),  # not a tensor
    ],
)
def test_metrics_reject_anything_but_uint8_nfhw3(cache_dir, bad) -> None:
    for metric in (
        SyntheticFVD(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir),
        SyntheticClassAccuracy(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir),
        SyntheticStructure(),
    ):
        with pytest.raises(ValueError, match=metric.name):
            metric.update_fake(bad, labels=torch.zeros(2, dtype=torch.long))


def test_classifier_metrics_reject_other_clip_shapes(cache_dir) -> None:
    metric = SyntheticFVD(num_frames=FRAMES, resolution=RES, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="8-frame"):
        metric.update_fake(torch.zeros(2, FRAMES + 1, RES, RES, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="16x16"):
        metric.update_fake(torch.zeros(2, FRAMES, 2 * RES, 2 * RES, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown data settings"):
        SyntheticFVD(num_frames=FRAMES, resolution=RES, data={"colour": "red"})
    with pytest.raises(ValueError, match=">= 2 frames"):
        SyntheticFVD(num_frames=1, resolution=RES)
    with pytest.raises(ValueError, match="unknown data settings"):
        SyntheticStructure(data={"batch_size": 4})


def test_metrics_config_carries_every_generator_setting_of_the_data() -> None:
    """conf/metrics/synthetic.yaml hands the data's generator settings to both metrics: with larger objects,
    a colour subset and a speed range set on `data`, real clips of that data score presence 1 (the default
    sizes' area bounds would refuse the large objects) and the classifier is trained on the same settings."""
    cfg = compose_config(
        [
            "+data.object_size=[0.6,0.7]",
            "+data.colors=[red,blue]",
            "+data.speed=[0.04,0.05]",
            "data.resolution=16",
        ]
    )
    structure = instantiate(cfg.metrics.synthetic_structure)
    fvd_data = generator_kwargs(instantiate(cfg.metrics.synthetic_fvd).data)
    assert fvd_data["object_size"] == [0.6, 0.7]
    assert fvd_data["colors"] == ["red", "blue"]
    assert fvd_data["speed"] == [0.04, 0.05]
    assert "shapes" not in fvd_data  # unset keys stay the generator's defaults
    data = {"object_size": [0.6, 0.7], "colors": ["red", "blue"], "speed": [0.04, 0.05]}
    videos, _ = synthetic_clips(48, 8, 16, "val", data=data)
    structure.update_fake(videos)
    naive = SyntheticStructure()
    naive.update_fake(videos)
    presence = "synthetic_structure/object_presence"
    assert structure.compute()[presence] == 1.0
    assert naive.compute()[presence] < 0.9
