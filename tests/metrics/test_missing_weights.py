"""Missing weight files are reported all at once: every missing or wrong file of the requested metrics, with
absolute paths, the metrics that need each, and the folder that was searched, in one error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from vidgen.metrics.evaluation import build_metrics
from vidgen.metrics.evaluation_job import run_evaluation
from vidgen.metrics.evaluator import check_required_files
from vidgen.metrics.fvd import STYLEGAN_V_I3D_SIZE
from vidgen.metrics.weights import WEIGHTS_ENV, MissingWeightsError, WeightFile, check_weight_files

FOUR = "metrics=[fvd,fid,is,clipsim]"
FILES = ("i3d_torchscript.pt", "pt_inception-2015-12-05-6726825d.pth", "open_clip_vit_b_32_laion2b.bin")


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``$VIDGEN_WEIGHTS`` folder; the working directory is another empty folder."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    return folder


def _four_metrics(tmp_path: Path) -> dict:
    cfg = compose_config([FOUR], run_dir=tmp_path / "run", config_name="evaluate")
    return build_metrics(cfg.metrics, torch.device("cpu"))


def test_every_missing_file_of_four_metrics_in_one_error(weights_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as caught:
        check_required_files(_four_metrics(tmp_path))
    message = str(caught.value)
    assert message.startswith("3 weight files of the requested metrics missing or wrong:"), message
    for name, metric in zip(FILES, ("fvd", "fid", "clipsim"), strict=True):
        assert f"metric '{metric}': '{weights_dir / name}' is not there" in message, message
        assert f"looked for '{tmp_path / 'cwd' / name}' and '{weights_dir / name}'" in message, message
    assert "(also needed by 'is')" in message  # fid and is share the Inception file: listed once
    assert f"({WEIGHTS_ENV}={weights_dir})" in message and "Nothing is downloaded" in message


def test_without_the_weights_folder_the_working_directory_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeightsError) as caught:
        check_required_files(_four_metrics(tmp_path))
    message = str(caught.value)
    assert all(f"'{tmp_path / name}' is not there" in message for name in FILES), message
    assert (
        f"{WEIGHTS_ENV} is not set, so relative paths are looked for in the working directory {tmp_path}"
        in message
    )


def test_a_wrong_file_and_a_missing_one_are_reported_together(weights_dir: Path, tmp_path: Path) -> None:
    (weights_dir / FILES[0]).write_bytes(b"not the detector")
    (weights_dir / FILES[2]).write_bytes(b"")  # clipsim's: no size is known, its presence is enough
    with pytest.raises(MissingWeightsError) as caught:
        check_required_files(_four_metrics(tmp_path))
    message = str(caught.value)
    assert message.startswith("2 weight files"), message
    assert f"'{weights_dir / FILES[0]}' has 16 bytes, expected {STYLEGAN_V_I3D_SIZE}" in message
    assert f"'{weights_dir / FILES[1]}' is not there" in message and FILES[2] not in message


def test_present_files_come_back_resolved(weights_dir: Path) -> None:
    (weights_dir / "a.pt").write_bytes(b"a")
    files = [WeightFile(Path("a.pt"), "m", "a test file"), WeightFile(weights_dir / "a.pt", "n", "the same")]
    assert check_weight_files(files) == [weights_dir / "a.pt", weights_dir / "a.pt"]


def test_evaluate_stops_with_the_whole_list_before_reading_videos(weights_dir: Path, tmp_path: Path) -> None:
    cfg = compose_config(
        [FOUR, f"fake_dir={tmp_path / 'no_videos'}", f"real_dir={tmp_path / 'no_videos'}"],
        run_dir=tmp_path / "run",
        config_name="evaluate",
    )
    with pytest.raises(MissingWeightsError, match="3 weight files") as caught:
        run_evaluation(cfg)
    assert all(str(weights_dir / name) in str(caught.value) for name in FILES)
