"""``python -m vidgen.bench 'bench.peers=[official,diffusers]'`` (vidgen/benchmark/peers.py) at tiny sizes on the
CPU: the official file loaded by importlib (a stand-in in the official API, written to tmp_path), the
adapter's layout conversion, the config errors, the diffusers peer's parameter and FLOP differences (exact, by
design: adaLN-single), and the round-robin timing's rows and ratios. No speed is asserted."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_DATA, TINY_MODEL, compose_config
from vidgen.benchmark.peers import (
    VIDGEN,
    LatteArch,
    StepInputs,
    build_diffusers,
    build_official,
    build_vidgen,
    count_step_flops,
    format_peers,
    load_official_module,
    run_peers,
    summarise_times,
    time_round_robin,
)
from vidgen.config.errors import ConfigError

# the official models/latte.py's API: the constructor's arguments, forward(x (B, F, C, H, W), t, y=None, ...)
# returning (B, F, C_out, H, W). The output adds each frame's index to it, so a frame axis moved by the
# adapter shows; `seen` records the input shapes and whether labels came.
STAND_IN = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Latte(nn.Module):
        def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                     num_heads=16, mlp_ratio=4.0, num_frames=16, class_dropout_prob=0.1, num_classes=1000,
                     learn_sigma=True, extras=1, attention_mode='math'):
            super().__init__()
            self.config = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                               hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                               num_frames=num_frames, class_dropout_prob=class_dropout_prob,
                               num_classes=num_classes, learn_sigma=learn_sigma, extras=extras,
                               attention_mode=attention_mode)
            self.out_channels = in_channels * 2 if learn_sigma else in_channels
            self.scale = nn.Parameter(torch.ones(()))
            self.seen = []

        def forward(self, x, t, y=None, text_embedding=None, use_fp16=False):
            self.seen.append((tuple(x.shape), y is not None))
            frames = torch.arange(x.shape[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1, 1)
            out = x + frames
            if self.out_channels != x.shape[2]:
                out = torch.cat([out, -out], dim=2)
            return self.scale * out


    def Latte_S_2(**kwargs):
        return Latte(depth=12, hidden_size=384, patch_size=2, num_heads=6, **kwargs)


    Latte_models = {'Latte-S/2': Latte_S_2}
    """
)


def _stand_in(tmp_path: Path) -> Path:
    path = tmp_path / "Latte" / "models" / "latte.py"
    path.parent.mkdir(parents=True)
    path.write_text(STAND_IN)
    return path


def _bench_config(tmp_path: Path, *overrides: str, model: list[str] = TINY_MODEL):
    overrides = [*model, *TINY_DATA, "bench.batch_size=2", "bench.device=cpu", *overrides]
    return compose_config(overrides, run_dir=tmp_path / "run", config_name="bench")


def _arch(num_classes: int = 0, learn_sigma: bool = True) -> LatteArch:
    return LatteArch(
        size="tiny", depth=2, hidden_size=32, num_heads=2, patch_size=2, in_channels=3,
        out_channels=6 if learn_sigma else 3, input_size=16, num_frames=4, mlp_ratio=4.0,
        learn_sigma=learn_sigma, num_classes=num_classes, label_drop_prob=0.1,
    )  # fmt: skip


@pytest.mark.parametrize("num_classes", [0, 5])
def test_official_file_is_imported_built_at_vidgen_sizes_and_adapted_to_its_layout(
    tmp_path: Path, num_classes: int
) -> None:
    arch = _arch(num_classes)
    module = load_official_module(_stand_in(tmp_path))
    contender = build_official(arch, module)
    official = contender.module.model
    assert official.config == {
        "input_size": 16, "patch_size": 2, "in_channels": 3, "hidden_size": 32, "depth": 2, "num_heads": 2,
        "mlp_ratio": 4.0, "num_frames": 4, "class_dropout_prob": 0.1 if num_classes else 0.0,
        "num_classes": num_classes, "learn_sigma": True, "extras": 2 if num_classes else 1,
        "attention_mode": "math",
    }  # fmt: skip

    inputs = StepInputs.random(arch, 2, 1000, seed=0)
    assert inputs.x.shape == (2, 3, 4, 16, 16) and inputs.target.shape == (2, 6, 4, 16, 16)
    out = contender.module(inputs.x, inputs.t, inputs.labels)
    # the official model got frames before channels, and labels only when class-conditional
    assert official.seen == [((2, 4, 3, 16, 16), num_classes > 0)]
    frames = torch.arange(4.0).view(1, 1, 4, 1, 1)
    expected = torch.cat([inputs.x + frames, -(inputs.x + frames)], dim=1)
    assert out.shape == (2, 6, 4, 16, 16)
    torch.testing.assert_close(out, expected)
    assert any("(B, F, C, H, W)" in note for note in contender.notes)


def test_missing_official_file_unknown_peer_and_models_without_peers_are_config_errors(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "latte.py"
    with pytest.raises(ConfigError) as info:
        run_peers(_bench_config(tmp_path, "bench.peers=[official]", f"bench.official_latte={missing}"))
    assert info.value.key == "bench.official_latte" and str(missing) in str(info.value)

    not_latte = tmp_path / "not_latte.py"
    not_latte.write_text("x = 1\n")
    with pytest.raises(ConfigError) as info:
        load_official_module(not_latte)
    assert info.value.key == "bench.official_latte" and "no class Latte" in str(info.value)

    for overrides, model, says in (
        (["bench.peers=[official,tiled]"], TINY_MODEL, "unknown peer 'tiled'"),
        (["bench.peers=[diffusers,diffusers]"], TINY_MODEL, "listed twice"),
        (["bench.peers=[diffusers]"], ["model=latent_shift"], "need a vidgen Latte model"),
        (["bench.peers=[diffusers]"], [*TINY_MODEL, "model=latte_v2"], "model.variant=2"),
        (["bench.peers=[diffusers]"], [*TINY_MODEL, "model.depth=3"], "depth 3 is odd"),
        (["bench.peers=[diffusers]", "bench.compare=[latte_v1,latte_v2]"], TINY_MODEL, "bench.compare"),
    ):
        with pytest.raises(ConfigError) as info:
            run_peers(_bench_config(tmp_path, *overrides, model=model))
        assert info.value.key == "bench.peers" and says in str(info.value), overrides
    with pytest.raises(ConfigError) as info:
        run_peers(_bench_config(tmp_path, "bench.peers=[official]", "bench.official_attention=fast"))
    assert info.value.key == "bench.official_attention"


def test_diffusers_peer_differs_from_vidgen_by_its_adaln_single_exactly(tmp_path: Path) -> None:
    """Same depth / width / heads / patch / frames / channels: the output shape and every matmul agree except
    adaLN-single's (one shared Linear(h, 6h) and (6, h) tables instead of a Linear(h, 6h) per block and a
    Linear(h, 2h) in the final layer) and the unused caption projection (Linear(1, h), Linear(h, h))."""
    cfg = _bench_config(tmp_path, "bench.peers=[diffusers]")
    vidgen, arch = build_vidgen(cfg, ["diffusers"])
    diffusers = build_diffusers(arch)
    h, depth, batch = arch.hidden_size, arch.depth, 2
    assert (h, depth, arch.num_heads, arch.input_size, arch.num_frames) == (32, 2, 2, 16, 4)
    config = diffusers.module.model.config
    assert (config.num_layers, config.num_attention_heads * config.attention_head_dim) == (depth // 2, h)
    assert config.cross_attention_dim is None and config.out_channels == arch.out_channels

    def params(contender) -> int:
        return sum(p.numel() for p in contender.module.parameters() if p.requires_grad)

    assert params(vidgen) - params(diffusers) == 6 * h * h * (depth - 1) + h * h - 9 * h

    inputs = StepInputs.random(arch, batch, 1000, seed=0)
    assert diffusers.module(inputs.x, inputs.t).shape == vidgen.module(inputs.x, inputs.t).shape
    vidgen_forward, vidgen_step = count_step_flops(vidgen.module, inputs)
    diffusers_forward, diffusers_step = count_step_flops(diffusers.module, inputs)
    adaln = 2 * batch * h * 6 * h * (depth - 1) + 2 * batch * h * 2 * h
    caption = 2 * batch * (1 * h + h * h)
    assert vidgen_forward - diffusers_forward == adaln - caption
    assert vidgen_step > 2 * vidgen_forward and diffusers_step > 2 * diffusers_forward


def test_round_robin_interleaves_after_each_models_warmup_and_ratios_are_peer_over_vidgen() -> None:
    calls: list[str] = []
    steps = {name: (lambda name=name: calls.append(name)) for name in (VIDGEN, "official", "diffusers")}
    times = time_round_robin(steps, rounds=2, warmup=2, device=torch.device("cpu"))
    warmup = [VIDGEN, VIDGEN, "official", "official", "diffusers", "diffusers"]
    assert calls == [*warmup, VIDGEN, "official", "diffusers", VIDGEN, "official", "diffusers"]
    assert {name: len(values) for name, values in times.items()} == dict.fromkeys(steps, 2)

    summary = summarise_times({VIDGEN: [0.01, 0.03, 0.02], "official": [0.04, 0.05, 0.04]})
    assert summary[VIDGEN] == pytest.approx({"median_step_ms": 20.0, "ratio_vs_vidgen": 1.0})
    assert summary["official"] == pytest.approx({"median_step_ms": 40.0, "ratio_vs_vidgen": 2.0})


def test_run_peers_times_every_model_in_one_process(tmp_path: Path) -> None:
    official = _stand_in(tmp_path)
    cfg = _bench_config(
        tmp_path,
        "bench.peers=[diffusers,official]",
        f"bench.official_latte={official}",
        "bench.train_steps=2",
        "bench.warmup_steps=1",
    )
    result = run_peers(cfg)
    json.dumps(result)  # bench.json
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == [VIDGEN, "official", "diffusers"] and result["skipped"] == {}
    assert result["latent_shape"] == [3, 4, 16, 16] and result["batch_size"] == 2
    for row in rows.values():
        assert len(row["step_ms"]) == 2 and all(ms > 0 for ms in row["step_ms"])
        assert row["median_step_ms"] > 0
        assert row["ratio_vs_vidgen"] == pytest.approx(row["median_step_ms"] / rows[VIDGEN]["median_step_ms"])
    assert rows[VIDGEN]["ratio_vs_vidgen"] == 1.0
    assert rows[VIDGEN]["step_flops"] > rows[VIDGEN]["forward_flops"] > 0
    assert rows["official"]["params_trainable"] == 1  # the stand-in's one parameter

    lines = format_peers(result).splitlines()
    assert lines[0].startswith("| model ") and "ratio vs vidgen" in lines[0]
    table = [line for line in lines if line.startswith("| ")][2:]
    assert [line.split("|")[1].split()[0] for line in table] == [VIDGEN, "official", "diffusers"]
    assert any(
        line.startswith("timing: 1 warm-up steps per model, then 2 rounds round-robin") for line in lines
    )


def test_official_peer_without_a_path_is_skipped_with_a_note(tmp_path: Path) -> None:
    result = run_peers(_bench_config(tmp_path, "bench.peers=[official]", "bench.time=false"))
    assert [row["name"] for row in result["rows"]] == [VIDGEN]
    assert "bench.official_latte is null" in result["skipped"]["official"]
    assert result["rows"][0]["median_step_ms"] is None and result["rows"][0]["forward_flops"] > 0
    table = format_peers(result)
    assert "not measured" in table and "bench.official_latte is null" in table
    assert "timing: not measured (bench.time=false)" in table.splitlines()


@pytest.mark.parametrize("peers_too", [False, True])
def test_compile_times_vidgen_compiled_and_the_peers_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, peers_too: bool
) -> None:
    compiled: list[tuple[str, str | None]] = []

    def record(module: torch.nn.Module, *args: object, mode: str | None = None, **kwargs: object) -> None:
        compiled.append((type(module).__name__, mode))  # no real compilation: the choice is under test

    monkeypatch.setattr(torch.nn.Module, "compile", record)
    official = _stand_in(tmp_path)
    cfg = _bench_config(
        tmp_path,
        "bench.peers=[official,diffusers]",
        f"bench.official_latte={official}",
        "bench.train_steps=1",
        "bench.warmup_steps=1",
        "compile.enabled=true",
        "compile.mode=max-autotune",
        f"bench.compile_peers={str(peers_too).lower()}",
    )
    result = run_peers(cfg)
    expected = ["VidgenLatteAdapter"]
    if peers_too:
        expected += ["OfficialLatteAdapter", "DiffusersLatteAdapter"]
    assert compiled == [(name, "max-autotune") for name in expected]
    flags = {row["name"]: row["compiled"] for row in result["rows"]}
    assert flags == {VIDGEN: True, "official": peers_too, "diffusers": peers_too}
    table = format_peers(result)
    assert f"| {VIDGEN} (vidgen.models.latte.Latte), compiled" in table
    assert ("diffusers.LatteTransformer3DModel), compiled" in table) is peers_too
    assert "compiled: torch.compile (compile.mode=max-autotune)" in table


def test_compile_settings_that_would_time_a_compilation_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_peers(_bench_config(tmp_path, "bench.peers=[diffusers]", "bench.compile_peers=true"))
    assert info.value.key == "bench.compile_peers"
    with pytest.raises(ConfigError) as info:
        run_peers(
            _bench_config(tmp_path, "bench.peers=[diffusers]", "compile.enabled=true", "bench.warmup_steps=0")
        )
    assert info.value.key == "bench.warmup_steps"
    # without timing nothing is compiled, so neither setting matters
    result = run_peers(
        _bench_config(tmp_path, "bench.peers=[diffusers]", "bench.compile_peers=true", "bench.time=false")
    )
    assert [row["compiled"] for row in result["rows"]] == [False, False]
