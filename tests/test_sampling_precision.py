"""``sampler.precision``: ``bf16-mixed`` runs the denoiser under bf16 autocast while the guidance, the
sampler's arithmetic and the returned videos stay fp32; ``32-true`` runs no autocast; checkpoints without the
key sample in fp32; on a CPU without bf16 matrix instructions the warning names ``sampler.precision``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vidgen.lit.cpu_precision as cpu_precision
from tests.conftest import TINY, compose_config
from vidgen.conditioning import Cond
from vidgen.diffusion import guided_model_fn
from vidgen.lit.build import build_module
from vidgen.lit.sampling_precision import sampling_autocast, split_sampling_precision


def test_the_precision_is_split_from_the_sampler_config_and_checked() -> None:
    assert split_sampling_precision({"name": "ddpm", "steps": 3}) == ("32-true", {"name": "ddpm", "steps": 3})
    precision, rest = split_sampling_precision({"name": "ddim", "precision": "bf16-mixed"})
    assert precision == "bf16-mixed" and rest == {"name": "ddim"}
    with pytest.raises(ValueError, match=r"sampler\.precision"):
        split_sampling_precision({"precision": "16-mixed"})


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_guidance_hands_the_sampler_the_denoisers_output_in_the_samples_dtype(scale: float) -> None:
    """A denoiser under autocast returns bf16; the model function gives it back as fp32 (the guided mix too)."""

    def bf16_denoiser(x: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        return (x * 3 + cond.labels.view(-1, 1, 1).float()).bfloat16()

    cond, null = Cond(labels=torch.tensor([1, 2])), Cond(labels=torch.tensor([0, 0]))
    model_fn = guided_model_fn(bf16_denoiser, cond, null, scale, learn_sigma=False)
    x = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    out = model_fn(x, torch.zeros(2, dtype=torch.long))
    assert out.dtype == torch.float32
    labels = torch.tensor([1.0, 2.0]).view(-1, 1, 1)
    cond_out, uncond_out = (x * 3 + labels).bfloat16().float(), (x * 3).bfloat16().float()
    expected = uncond_out + scale * (cond_out - uncond_out)  # the guided mix of the two, in fp32
    assert torch.allclose(out, expected, rtol=0, atol=1e-6)


def _randomised_module(tmp_path: Path):
    module = build_module(compose_config([*TINY, "sampler.steps=3"], run_dir=tmp_path / "run"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the zero-initialised output layers would make both precisions return the prior
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return module


def test_bf16_sampling_autocasts_the_denoiser_only_and_stays_near_fp32(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: True)
    module = _randomised_module(tmp_path)
    calls: list[tuple[bool, torch.dtype]] = []
    module.sampling_denoiser.register_forward_hook(
        lambda _m, _i, out: calls.append((torch.is_autocast_enabled("cpu"), out.dtype))
    )
    assert module.sampler_cfg.get("precision", "32-true") == "32-true"
    fp32 = module.generate(3, generator=torch.Generator().manual_seed(0))
    assert calls == [(False, torch.float32)] * 3
    calls.clear()
    bf16 = module.generate(
        3,
        generator=torch.Generator().manual_seed(0),
        sampler={**module.sampler_cfg, "precision": "bf16-mixed"},
    )
    assert calls == [(True, torch.bfloat16)] * 3
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert not torch.is_autocast_enabled("cpu")  # the context ends with the sampling
    difference = (bf16 - fp32).abs()
    assert 0 < difference.mean() < 0.05  # bf16 rounding, not another sample


def test_bf16_sampling_on_a_cpu_without_bf16_names_the_key(monkeypatch) -> None:
    monkeypatch.setattr(cpu_precision, "cpu_has_bf16_matmul", lambda: False)
    warning = r"sampler\.precision=bf16-mixed .*Use sampler\.precision=32-true"
    with pytest.warns(UserWarning, match=warning), sampling_autocast("bf16-mixed", "cpu"):
        assert torch.is_autocast_enabled("cpu")
    with sampling_autocast("32-true", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
