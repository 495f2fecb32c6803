"""Every real ``data=`` config on a tiny tree in its real layout (tests/data/real_layouts.py): the broken files
are counted exactly, and training runs 2 steps with ``data.root`` as the only data override."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.data.real_layouts import LAYOUTS, Layout
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


@pytest.mark.slow
@pytest.mark.parametrize("data", sorted(LAYOUTS))
def test_every_data_config_trains_two_steps_on_its_real_layout(data: str, tmp_path: Path) -> None:
    from vidgen.train import train

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
