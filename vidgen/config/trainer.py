"""Checks of the ``trainer`` node (Lightning ``Trainer`` arguments) before anything is built.

Lightning checks most of these values only when the ``Trainer`` is constructed, after the data and the model
are built, some only when training starts (or never: ``max_steps=-5`` trains forever). Here every value a
user can type for a known key is checked first, and a bad one fails with a :class:`ConfigError` naming the
key and the value (``trainer.max_steps: must be an integer >= 1, or -1 (no limit), got 'abc'``). Keys not
listed in :data:`TRAINER_CHECKS` are left to Lightning (``check_target_kwargs`` has already refused names
that are no ``Trainer`` argument).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig

from vidgen.config.errors import ConfigError

__all__ = ["PRECISIONS", "TRAINER_CHECKS", "check_trainer"]

#: what ``trainer.precision`` accepts (Lightning 2.x: the names, their legacy aliases and integers)
PRECISIONS: tuple[str | int, ...] = (
    "32-true",
    "bf16-mixed",
    "16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
    "32",
    "16",
    "bf16",
    "64",
    32,
    16,
    64,
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fail(key: str, expected: str, value: Any) -> ConfigError:
    hint = ""
    if isinstance(value, float) and value.is_integer():
        hint = f" (a float: write {int(value)})"
    return ConfigError(key, f"must be {expected}, got {value!r}{hint}")


def _int_at_least(
    minimum: int, optional: bool = False, unlimited: int | None = None
) -> Callable[[str, Any], None]:
    """An integer ``>= minimum`` (or ``unlimited``, e.g. -1; or null when ``optional``)."""
    expected = f"an integer >= {minimum}"
    if unlimited is not None:
        expected += f", or {unlimited} (no limit)"
    if optional:
        expected += ", or null"

    def check(key: str, value: Any) -> None:
        if value is None and optional:
            return
        if not _is_int(value) or (value < minimum and value != unlimited):
            raise _fail(key, expected, value)

    return check


def _flag(allowed: tuple[Any, ...] = ()) -> Callable[[str, Any], None]:
    """``true`` / ``false`` (or one of ``allowed``, e.g. null or ``warn``)."""
    expected = " or ".join(["true", "false", *("null" if a is None else repr(a) for a in allowed)])

    def check(key: str, value: Any) -> None:
        if not isinstance(value, bool) and value not in allowed:
            raise _fail(key, expected, value)

    return check


def _count_or_fraction(minimum: int, zero_fraction: bool) -> Callable[[str, Any], None]:
    """An integer ``>= minimum`` (a number of batches) or a float fraction in (0, 1] ([0, 1] when
    ``zero_fraction``), or null."""
    interval = "[0, 1]" if zero_fraction else "(0, 1]"
    expected = f"an integer >= {minimum} (batches) or a float in {interval} (a fraction), or null"

    def check(key: str, value: Any) -> None:
        if value is None or (_is_int(value) and value >= minimum):
            return
        if isinstance(value, float) and (value >= 0 if zero_fraction else value > 0) and value <= 1:
            return
        raise _fail(key, expected, value)

    return check


def _check_val_check_interval(key: str, value: Any) -> None:
    _count_or_fraction(1, zero_fraction=False)(key, value)


def _check_limit_batches(key: str, value: Any) -> None:
    _count_or_fraction(0, zero_fraction=True)(key, value)


def _check_precision(key: str, value: Any) -> None:
    if isinstance(value, bool) or value not in PRECISIONS:
        names = ", ".join(str(p) for p in PRECISIONS if isinstance(p, str) and "-" in p)
        raise ConfigError(key, f"unknown precision {value!r}; choose one of {names}")


def _check_gradient_clip_val(key: str, value: Any) -> None:
    if value is not None and (not _is_number(value) or value < 0):
        raise _fail(key, "a number >= 0 (0 or null: no clipping)", value)


def _check_gradient_clip_algorithm(key: str, value: Any) -> None:
    if value is not None and value not in ("norm", "value"):
        raise _fail(key, "'norm' or 'value' (or null: norm)", value)


def _check_fast_dev_run(key: str, value: Any) -> None:
    if not isinstance(value, bool) and not (_is_int(value) and value >= 0):
        raise _fail(key, "true, false or an integer >= 0 (batches)", value)


def _check_accelerator(key: str, value: Any) -> None:
    if isinstance(value, Mapping):  # a _target_ node: its arguments are checked against its signature
        return
    from lightning.pytorch.accelerators import AcceleratorRegistry

    allowed = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
    if value not in allowed:
        raise ConfigError(key, f"unknown accelerator {value!r}; choose one of {', '.join(allowed)}")


def _check_strategy(key: str, value: Any) -> None:
    if isinstance(value, Mapping):  # a _target_ node (e.g. trainer=ddp_spawn): checked by its signature
        return
    from lightning.pytorch.strategies import StrategyRegistry

    allowed = ("auto", *StrategyRegistry.available_strategies())
    if not isinstance(value, str) or value.lower() not in allowed:
        shown = ", ".join(a for a in allowed if "find_unused" not in a)
        raise ConfigError(key, f"unknown strategy {value!r}; choose one of {shown} (or a _target_ node)")


def _device_list(value: Any) -> list[Any] | None:
    """The device indices of ``devices=[0,1]`` or ``devices='0,1'``, as given; None for other forms."""
    if isinstance(value, list | tuple | ListConfig):
        return list(value)
    if isinstance(value, str) and "," in value:
        return [int(part) if part.strip().isdigit() else part for part in value.split(",") if part.strip()]
    return None


def _valid_indices(indices: list[Any] | None) -> bool:
    """A non-empty list of distinct device indices >= 0."""
    if not indices:
        return False
    return all(_is_int(i) and i >= 0 for i in indices) and len(set(indices)) == len(indices)


def check_devices(key: str, value: Any, accelerator: Any = None) -> None:
    """``trainer.devices``: ``auto``, a count >= 1, -1 (every device; not on the CPU), or a list of distinct
    device indices ``[0, 1]`` / ``'0,1'`` (GPUs)."""
    if value == "auto":
        return
    on_cpu = accelerator == "cpu"
    count = int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else value
    if _is_int(count) and (count >= 1 or (count == -1 and not on_cpu)):
        return
    if not on_cpu and _valid_indices(_device_list(value)):
        return
    if on_cpu:
        raise _fail(key, "'auto' or an integer >= 1 (processes; trainer.accelerator=cpu)", value)
    raise _fail(key, "'auto', an integer >= 1 (how many), -1 (all), or distinct device indices [0, 1]", value)


#: the checked ``trainer`` keys and their checks; each takes ``(dotted key, value)``
TRAINER_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "max_steps": _int_at_least(1, unlimited=-1),
    "min_steps": _int_at_least(0, optional=True),
    "max_epochs": _int_at_least(1, optional=True, unlimited=-1),
    "min_epochs": _int_at_least(0, optional=True),
    "val_check_interval": _check_val_check_interval,
    "check_val_every_n_epoch": _int_at_least(1, optional=True),
    "log_every_n_steps": _int_at_least(0),  # 0: no logging within the epoch (Lightning's meaning)
    "accumulate_grad_batches": _int_at_least(1),
    "num_nodes": _int_at_least(1),
    "num_sanity_val_steps": _int_at_least(0, optional=True, unlimited=-1),
    "reload_dataloaders_every_n_epochs": _int_at_least(0),
    "limit_train_batches": _check_limit_batches,
    "limit_val_batches": _check_limit_batches,
    "limit_test_batches": _check_limit_batches,
    "limit_predict_batches": _check_limit_batches,
    "precision": _check_precision,
    "accelerator": _check_accelerator,
    "strategy": _check_strategy,
    "gradient_clip_val": _check_gradient_clip_val,
    "gradient_clip_algorithm": _check_gradient_clip_algorithm,
    "deterministic": _flag((None, "warn")),
    "benchmark": _flag((None,)),
    "fast_dev_run": _check_fast_dev_run,
    **{
        name: _flag((None,))
        for name in (
            "enable_checkpointing",
            "enable_progress_bar",
            "enable_model_summary",
            "use_distributed_sampler",
            "inference_mode",
            "barebones",
            "detect_anomaly",
            "sync_batchnorm",
        )
    },
}


def check_trainer(node: DictConfig | Mapping[str, Any] | None, key: str = "trainer") -> None:
    """Check every known key of a resolved ``trainer`` node (:data:`TRAINER_CHECKS`, and ``devices`` against
    the accelerator); the first bad value raises a :class:`ConfigError` naming ``<key>.<name>`` and the value.
    """
    if node is None:
        return
    for name, check in TRAINER_CHECKS.items():
        if name in node:
            check(f"{key}.{name}", node[name])
    if "devices" in node:
        check_devices(f"{key}.devices", node["devices"], node.get("accelerator"))
