"""A checkpoint that is empty, cut short or not vidgen's fails with "not a valid vidgen checkpoint" and the
file, before any model is built, in ``vidgen.train``, ``vidgen.sample`` and ``vidgen.evaluate``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, compose_config
from tests.test_cli import run_module
from vidgen.config.errors import ConfigError
from vidgen.lit.checkpoint_sampling import sample
from vidgen.lit.checkpoints import INVALID_CHECKPOINT, check_checkpoint, read_checkpoint
from vidgen.lit.training import train
from vidgen.metrics.evaluation_job import run_evaluation

QUIET = ["samples.final_num_videos=0", "samples.num_videos=0"]


@pytest.fixture(scope="module")
def real_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``last.ckpt`` of a tiny Latte trained one step (under a second)."""
    run_dir = tmp_path_factory.mktemp("real") / "run"
    train(compose_config([*TINY, "trainer.max_steps=1", *QUIET], run_dir=run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def _empty(folder: Path, real: Path) -> Path:
    path = folder / "empty.ckpt"
    path.write_bytes(b"")
    return path


def _truncated(folder: Path, real: Path) -> Path:
    path = folder / "truncated.ckpt"
    data = real.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _plain_dict(folder: Path, real: Path) -> Path:
    path = folder / "plain.ckpt"
    torch.save({"weights": torch.zeros(3), "epoch": 1}, path)
    return path


def _tensor(folder: Path, real: Path) -> Path:
    path = folder / "tensor.pt"
    torch.save(torch.zeros(3), path)
    return path


BAD_FILES: dict[str, Callable[[Path, Path], Path]] = {
    "empty": _empty,
    "truncated": _truncated,
    "plain_dict": _plain_dict,
    "tensor": _tensor,
}
REASONS = {
    "empty": "the file is empty (0 bytes)",
    "truncated": "torch.load cannot read it",
    "plain_dict": "it has no state_dict and no vidgen_config",
    "tensor": "it holds a Tensor",
}


def _assert_names_the_file(error: ConfigError, path: Path, kind: str) -> None:
    message = str(error)
    assert error.key == "ckpt_path", message
    assert INVALID_CHECKPOINT in message and str(path.absolute()) in message, message
    assert REASONS[kind] in message, message


@pytest.fixture
def no_model_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a module fails the test: the checkpoint must be refused before."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was built before the checkpoint was checked")

    monkeypatch.setattr("vidgen.lit.training.build_module", refuse)
    monkeypatch.setattr("vidgen.lit.build.build_module", refuse)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_check_and_read_refuse_the_file(kind: str, real_ckpt: Path, tmp_path: Path) -> None:
    path = BAD_FILES[kind](tmp_path, real_ckpt)
    for read in (check_checkpoint, read_checkpoint):
        with pytest.raises(ConfigError) as caught:
            read(path)
        _assert_names_the_file(caught.value, path, kind)


def test_the_real_checkpoint_passes_and_a_weights_only_one_cannot_resume(
    real_ckpt: Path, tmp_path: Path
) -> None:
    check_checkpoint(real_ckpt, resume=True)
    assert read_checkpoint(real_ckpt)["global_step"] == 1
    weights_only = tmp_path / "weights_only.ckpt"
    checkpoint = read_checkpoint(real_ckpt)
    del checkpoint["optimizer_states"]
    torch.save(checkpoint, weights_only)
    check_checkpoint(weights_only)  # fine for sampling
    with pytest.raises(ConfigError, match="training cannot resume from it"):
        check_checkpoint(weights_only, resume=True)


def test_a_folder_that_is_not_a_sharded_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "last.ckpt"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"{INVALID_CHECKPOINT}: a folder without meta.pt"):
        read_checkpoint(folder)
    torch.save({"vidgen_config": {"model": {}}}, folder / "meta.pt")
    with pytest.raises(ConfigError, match=r"no \.metadata next to the shards"):
        check_checkpoint(folder)


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
@pytest.mark.usefixtures("no_model_build")
def test_train_sample_and_evaluate_refuse_it_before_building(
    kind: str, real_ckpt: Path, tmp_path: Path
) -> None:
    path = BAD_FILES[kind](tmp_path, real_ckpt)
    run_dir = tmp_path / "run"
    calls = {
        "train": lambda: train(compose_config([*TINY, f"ckpt_path={path}"], run_dir=run_dir)),
        "sample": lambda: sample(
            compose_config([f"ckpt_path={path}"], run_dir=run_dir, config_name="sample")
        ),
        "evaluate": lambda: run_evaluation(
            compose_config([f"ckpt_path={path}"], run_dir=run_dir, config_name="evaluate")
        ),
    }
    for name, call in calls.items():
        with pytest.raises(ConfigError) as caught:
            call()
        assert caught.value.key == "ckpt_path", name
        _assert_names_the_file(caught.value, path, kind)
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow  # three interpreter start-ups
def test_the_command_lines_exit_2_with_the_message(real_ckpt: Path, tmp_path: Path) -> None:
    path = _truncated(tmp_path, real_ckpt)
    for module, extra in (("vidgen.train", TINY), ("vidgen.sample", []), ("vidgen.evaluate", [])):
        result = run_module(module, [*extra, f"ckpt_path={path}", f"hydra.run.dir={tmp_path / module}"])
        assert result.returncode == 2, result.stderr[-2000:]
        assert INVALID_CHECKPOINT in result.stderr and str(path) in result.stderr, result.stderr[-2000:]
