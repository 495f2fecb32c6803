"""Every real ``data=`` config on a tiny tree in its real layout (tests/data/real_layouts.py): the broken files
are counted exactly, and training runs 2 steps with ``data.root`` as the only data override."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.data.real_layouts import LAYOUTS, SHORT_FRAMES, Layout
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.bad_videos import BadVideoLog

#: CPU run overrides (model, recipe, trainer, samples): nothing of `data` but data.root
CPU_RUN = [
    "recipe=synthetic",
    "autoencoder=identity",
    "trainer.max_steps=2",
    "trainer.val_check_interval=1",
    "trainer.limit_val_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "~callbacks.progress_bar",
    "logger=csv",
    "samples.num_videos=0",
    "samples.final_num_videos=0",
    # two loader worker processes (the real configs start 8): the worker path, without 8 forks on 2 cores
    "data.num_workers=2",
]
#: conditioning that uses each dataset's labels / captions without downloaded weights
CONDITIONING = {"ucf101": ["conditioner=class"]}


def _names(found: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    return {kind: sorted(Path(p).name for p in paths) for kind, paths in found.items()}


@pytest.mark.parametrize("data", sorted(LAYOUTS))
def test_probe_counts_every_broken_file_exactly(data: str, tmp_path: Path) -> None:
    layout: Layout = LAYOUTS[data](tmp_path / "data")
    cfg = compose_config(
        [f"data={data}", f"data.root={layout.root}", "data.probe=true"], run_dir=tmp_path / "r"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datamodule = instantiate_node(cfg.data)
    log = BadVideoLog(tmp_path / "log")
    datamodule.attach_bad_video_log(log)
    expected = {kind: sorted(names) for kind, names in layout.bad.items()}
    assert _names(log.read()) == expected


@pytest.mark.parametrize("data", sorted(LAYOUTS))
def test_reading_every_clip_skips_and_counts_the_short_videos_exactly(data: str, tmp_path: Path) -> None:
    """Without probe, every config's default (data.short_videos=skip) treats a too-short training video like an
    unreadable one when it is read: never returned, the next video instead; a too-short validation video is
    padded (the fixed set keeps its clip). Each is named once, with its reason."""
    layout: Layout = LAYOUTS[data](tmp_path / "data")
    cfg = compose_config([f"data={data}", f"data.root={layout.root}"], run_dir=tmp_path / "r")
    assert cfg.data.short_videos == "skip"
    needs = f"too short: {SHORT_FRAMES} frames, needs {(cfg.data.num_frames - 1) * cfg.data.frame_stride + 1}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datamodule = instantiate_node(cfg.data)
    log = BadVideoLog(tmp_path / "log")
    datamodule.attach_bad_video_log(log)
    returned: dict[str, set[str]] = {}
    for split, dataset in (("train", datamodule.train_set), ("val", datamodule.val_set)):
        names = {dataset.entries[dataset[index]["index"]].path.name for index in range(len(dataset))}
        returned[split] = names
    found = log.read()
    assert _names(found)["too_short"] == sorted(layout.bad["too_short"])
    [(path, reason)] = found["too_short"].items()  # one short video per layout, in one split
    in_val = any(entry.path == Path(path) for entry in datamodule.val_set.entries)
    assert reason == (f"{needs}; padded with its last frame" if in_val else needs)
    assert (Path(path).name in returned["val"]) == in_val and Path(path).name not in returned["train"]
    assert _names(found)["missing"] == sorted(layout.bad["missing"])
    if data in ("skytimelapse", "taichi"):  # a broken frame is met only by the clips that read it
        assert set(_names(found)["unreadable"]) <= set(layout.bad["unreadable"])
    else:
        assert _names(found)["unreadable"] == sorted(layout.bad["unreadable"])
        assert returned["train"].isdisjoint(layout.bad["unreadable"])


@pytest.mark.parametrize("policy", ["skip", "pad"])
def test_probe_leaves_out_or_keeps_the_short_training_videos(policy: str, tmp_path: Path) -> None:
    layout: Layout = LAYOUTS["ucf101"](tmp_path / "data")
    overrides = ["data=ucf101", f"data.root={layout.root}", "data.probe=true", f"data.short_videos={policy}"]
    with pytest.warns(
        UserWarning, match=rf"1 of 10 readable videos .* fewer than 46 frames.*short_videos={policy}"
    ):
        datamodule = instantiate_node(compose_config(overrides, run_dir=tmp_path / "r").data)
    train = {entry.path.name for entry in datamodule.train_set.entries}
    assert len(train) == 10 - (policy == "skip")  # 12 on disk, one unreadable, one validates
    assert (layout.bad["too_short"][0] in train) == (policy == "pad")
    log = BadVideoLog(tmp_path / "log")
    datamodule.attach_bad_video_log(log)
    padded = "; padded with its last frame" if policy == "pad" else ""
    assert list(log.read()["too_short"].values()) == [f"too short: {SHORT_FRAMES} frames, needs 46{padded}"]


def test_a_bad_short_videos_value_names_the_key(tmp_path: Path) -> None:
    layout: Layout = LAYOUTS["faceforensics"](tmp_path / "data")
    cfg = compose_config(["data=faceforensics", f"data.root={layout.root}", "data.short_videos=drop"])
    with pytest.raises(ConfigError, match="must be one of skip, pad") as error:
        instantiate_node(cfg.data)
    assert error.value.key == "data.short_videos"


@pytest.mark.slow
@pytest.mark.parametrize("data", sorted(LAYOUTS))
def test_every_data_config_trains_two_steps_on_its_real_layout(data: str, tmp_path: Path) -> None:
    from vidgen.lit.training import train

    layout: Layout = LAYOUTS[data](tmp_path / "data")
    run_dir = tmp_path / "run"
    overrides = [f"data={data}", f"data.root={layout.root}", *CPU_RUN, *CONDITIONING.get(data, [])]
    cfg = compose_config(overrides, run_dir=run_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(cfg)
    assert summary["global_step"] == 2
    if data == "ucf101":
        assert cfg.data.num_classes == 3 and cfg.conditioner.num_classes == 3  # read from classInd.txt
    report = run_dir / "bad_videos.txt"
    seen: dict[str, list[str]] = {"unreadable": [], "too_short": [], "missing": []}
    if report.exists():
        for line in report.read_text().splitlines()[1:]:
            kind, path, _ = line.split("\t")
            seen[kind].append(Path(path).name)
    for kind, names in seen.items():  # only the broken files, each once; the index's missing ones always
        assert len(names) == len(set(names)) and set(names) <= set(layout.bad[kind]), (kind, names)
    assert sorted(seen["missing"]) == sorted(layout.bad["missing"])


def test_bench_reads_num_classes_from_the_data_as_train_does(tmp_path: Path) -> None:
    """``python -m vidgen.bench data=ucf101 conditioner=class`` with ``data.num_classes: null`` counts the
    classes (classInd.txt) before validating, as ``vidgen.train`` does, instead of failing on
    ``conditioner.num_classes``."""
    from vidgen.bench import measure

    layout: Layout = LAYOUTS["ucf101"](tmp_path / "data")
    cfg = compose_config(
        [
            "data=ucf101",
            f"data.root={layout.root}",
            "conditioner=class",
            "recipe=synthetic",
            "autoencoder=identity",
            "bench.time=false",
        ],
        run_dir=tmp_path / "run",
        config_name="bench",
    )
    assert cfg.data.num_classes is None
    result, table = measure(cfg)
    assert cfg.data.num_classes == 3 and cfg.conditioner.num_classes == 3
    assert result["params_trainable"] > 0 and "trainable params" in table
