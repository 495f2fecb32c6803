"""Every bad value a user can type for a ``trainer`` key fails before training, naming the key and the value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import CONFIG_DIR, TINY, compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.trainer import check_devices, check_trainer
from vidgen.lit.training import train

# (key, value as Hydra parses it from the command line)
BAD_VALUES: list[tuple[str, Any]] = [
    ("max_steps", "abc"),
    ("max_steps", -5),
    ("max_steps", 0),
    ("max_steps", 1e5),
    ("max_steps", True),
    ("max_steps", None),
    ("max_epochs", 0),
    ("min_steps", -1),
    ("val_check_interval", 0),
    ("val_check_interval", 1.5),
    ("val_check_interval", -0.5),
    ("val_check_interval", "often"),
    ("check_val_every_n_epoch", 0),
    ("log_every_n_steps", -1),
    ("log_every_n_steps", "ten"),
    ("accumulate_grad_batches", 0),
    ("accumulate_grad_batches", 2.5),
    ("num_nodes", 0),
    ("num_sanity_val_steps", -2),
    ("limit_val_batches", -1),
    ("limit_val_batches", 1.5),
    ("precision", "banana"),
    ("precision", "bf32"),
    ("precision", 8),
    ("precision", True),
    ("accelerator", "banana"),
    ("strategy", "banana"),
    ("gradient_clip_val", -1.0),
    ("gradient_clip_val", "big"),
    ("gradient_clip_algorithm", "max"),
    ("enable_progress_bar", "maybe"),
    ("deterministic", "sometimes"),
    ("fast_dev_run", -1),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[f"{k}={v}" for k, v in BAD_VALUES])
def test_a_bad_value_names_the_key_and_the_value(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        check_trainer({"accelerator": "cpu", name: value})
    assert caught.value.key == f"trainer.{name}"
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("value", "accelerator"),
    [
        (0, "cpu"),
        (-1, "cpu"),
        (-2, "gpu"),
        ("0", "cpu"),
        ([0, 1], "cpu"),
        ([0, 0], "gpu"),
        ([], "gpu"),
        ("x", "gpu"),
    ],
)
def test_bad_devices_name_the_key_and_the_value(value: Any, accelerator: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_devices("trainer.devices", value, accelerator)
    assert caught.value.key == "trainer.devices" and repr(value) in str(caught.value)


@pytest.mark.parametrize(
    ("value", "accelerator"),
    [
        ("auto", "cpu"),
        (1, "cpu"),
        (2, "cpu"),
        ("2", "cpu"),
        (-1, "gpu"),
        ([0, 1], "gpu"),
        ("0,1", "gpu"),
        (4, "auto"),
    ],
)
def test_good_devices_pass(value: Any, accelerator: str) -> None:
    check_devices("trainer.devices", value, accelerator)


GOOD_VALUES: list[tuple[str, Any]] = [
    ("max_steps", -1),
    ("max_steps", 1),
    ("max_epochs", None),
    ("val_check_interval", 0.25),
    ("val_check_interval", 1.0),
    ("val_check_interval", None),
    ("log_every_n_steps", 0),
    ("limit_val_batches", 0),
    ("limit_val_batches", 0.0),
    ("precision", "bf16-mixed"),
    ("precision", 16),
    ("precision", "bf16"),
    ("strategy", "ddp_find_unused_parameters_true"),
    ("strategy", {"_target_": "vidgen.lit.parallel.SpawnDDPStrategy"}),
    ("accelerator", "gpu"),
    ("gradient_clip_val", 1),
    ("gradient_clip_val", 0.5),
    ("deterministic", "warn"),
    ("fast_dev_run", 2),
]


@pytest.mark.parametrize(("name", "value"), GOOD_VALUES, ids=[f"{k}={v}" for k, v in GOOD_VALUES])
def test_good_values_pass(name: str, value: Any) -> None:
    check_trainer({"accelerator": "gpu", name: value})


def test_every_trainer_file_passes() -> None:
    for path in sorted(Path(CONFIG_DIR, "trainer").glob("*.yaml")):
        node = OmegaConf.load(path)
        node.default_root_dir = "run"  # the one interpolation (paths.run_dir)
        check_trainer(node)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_steps=abc", "trainer.max_steps: must be an integer >= 1, or -1 (no limit), got 'abc'"),
        ("trainer.devices=0", "trainer.devices: must be 'auto' or an integer >= 1"),
        ("trainer.precision=banana", "trainer.precision: unknown precision 'banana'"),
    ],
)
def test_train_refuses_a_command_line_value_before_anything_is_built(
    override: str, message: str, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as caught:
        train(compose_config([*TINY, override], run_dir=run_dir))
    assert str(caught.value).startswith(message), str(caught.value)
    assert not run_dir.exists()
