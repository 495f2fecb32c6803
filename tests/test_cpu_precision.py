"""bf16 on a CPU without bf16 matrix instructions is detected from the CPU's flags and warned about, naming
the precision setting (``trainer.precision`` or ``bench.precision``); CPUs with the instructions, other accelerators and fp32 are left alone."""

from __future__ import annotations

from pathlib import Path

import pytest

import vidgen.benchmark.measure as measure
import vidgen.lit.cpu_precision as cpu_precision
from tests.conftest import TINY_DATA, TINY_MODEL, compose_config
from vidgen.lit.cpu_precision import cpu_has_bf16_matmul, slow_bf16_warning, warn_if_slow_bf16

X86_WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
X86_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
TINY_BENCH = [
    *TINY_MODEL,
    *TINY_DATA,
    "bench.device=cpu",
    "bench.precision=32-true",
    "bench.train_steps=1",
    "bench.warmup_steps=1",
    "bench.sample_videos=1",
    "bench.loader_batches=0",
    "sampler.steps=2",
]
ARM_WITH = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(("text", "expected"), [(X86_WITH, True), (X86_WITHOUT, False), (ARM_WITH, True)])
def test_bf16_matrix_instructions_are_read_from_the_cpu_flags(
    text: str, expected: bool, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert cpu_has_bf16_matmul(cpuinfo) is expected
    assert cpu_has_bf16_matmul(tmp_path / "absent") is None


def test_the_warning_names_the_setting_only_where_bf16_would_be_emulated() -> None:
    message = slow_bf16_warning("cpu", "bf16-mixed", has_bf16=False)
    assert message is not None and "trainer.precision=bf16-mixed" in message and "32-true" in message
    assert slow_bf16_warning("cpu", "bf16-mixed", has_bf16=True) is None
    assert slow_bf16_warning("cpu", "bf16-mixed", has_bf16=None) is None  # unknown: no claim
    assert slow_bf16_warning("cpu", "32-true", has_bf16=False) is None
    assert slow_bf16_warning("gpu", "bf16-mixed", has_bf16=False) is None


def test_warning_is_emitted_for_this_machine_and_names_the_given_key(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: False)
    with pytest.warns(UserWarning, match=r"bench\.precision=bf16-mixed .*Use bench\.precision=32-true"):
        assert warn_if_slow_bf16("cpu", "bf16-mixed", "bench.precision") is not None
    assert "vidgen: warning: bench.precision=bf16-mixed" in capsys.readouterr().out
    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: True)
    assert warn_if_slow_bf16("cpu", "bf16-mixed") is None


class _Built(Exception):
    """Raised in place of building the module: the bench got past its precision check."""


def test_bench_warns_before_timing_bf16_on_a_cpu_without_bf16(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: False)

    def refuse(*args, **kwargs):
        raise _Built

    monkeypatch.setattr(measure, "build_module", refuse)
    cfg = compose_config(
        ["bench.device=cpu", "bench.precision=bf16-mixed"], run_dir=tmp_path / "run", config_name="bench"
    )
    with pytest.warns(UserWarning, match=r"bench\.precision=bf16-mixed"), pytest.raises(_Built):
        measure.run_bench(cfg)


def test_bench_compiles_the_denoiser_as_training_does(monkeypatch, tmp_path: Path) -> None:
    """``vidgen.bench compile.enabled=true`` times the compiled denoiser (it used to time the eager one)."""
    import torch

    compiled: list[tuple[type, str | None]] = []

    def record(self: torch.nn.Module, *args, mode: str | None = None, **kwargs) -> None:
        compiled.append((type(self), mode))

    monkeypatch.setattr(torch.nn.Module, "compile", record)
    cfg = compose_config(
        [
            *TINY_BENCH,
            "compile.enabled=true",
            "compile.mode=max-autotune",
        ],
        run_dir=tmp_path / "run",
        config_name="bench",
    )
    result = measure.run_bench(cfg)
    assert [mode for _, mode in compiled] == ["max-autotune"] and compiled[0][0].__name__ == "Latte"
    assert result["train_clips_per_s"] > 0
