"""Latte initialised from an ImageNet DiT checkpoint: a tiny state dict written in DiT's key layout (names,
order and shapes of facebookresearch/DiT's ``DiT`` module, the 2D sin-cos ``pos_embed`` computed with DiT's
formula) loads with the documented report; mismatches are reported, not raised."""

from __future__ import annotations

import argparse
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import TINY, compose_config
from vidgen.conditioning import Cond
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.lit.build import build_module
from vidgen.models.latte import Latte
from vidgen.models.pretrained import PretrainedReport, init_from_dit, init_module_from_pretrained

LABEL_TABLE = "y_embedder.embedding_table.weight"


# ------------------------------------------------------------------------------------- DiT's layout
def _dit_sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def dit_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """DiT's ``get_2d_sincos_pos_embed`` (numpy, ``meshgrid(w, h)``: the first half encodes the column)."""
    grid_h = np.arange(grid, dtype=np.float32)
    grid_w = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid, grid)
    table = np.concatenate([_dit_sincos_1d(dim // 2, mesh[0]), _dit_sincos_1d(dim // 2, mesh[1])], axis=1)
    return torch.from_numpy(table).float().unsqueeze(0)  # (1, grid*grid, dim): a frozen nn.Parameter in DiT


def dit_state_dict(
    depth: int = 2,
    hidden: int = 32,
    patch: int = 2,
    in_channels: int = 4,
    grid: int = 4,
    learn_sigma: bool = True,
    mlp_ratio: float = 4.0,
    seed: int = 0,
) -> OrderedDict[str, torch.Tensor]:
    """``DiT(...).state_dict()``: its own ``pos_embed`` first, then the children in registration order
    (x_embedder, t_embedder, y_embedder, blocks, final_layer); LayerNorms without affine have no entries, timm's
    Attention / Mlp give ``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``."""
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * 0.02

    out_channels = 2 * in_channels if learn_sigma else in_channels
    mlp = int(hidden * mlp_ratio)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    state["pos_embed"] = dit_pos_embed(hidden, grid)
    state["x_embedder.proj.weight"] = rand(hidden, in_channels, patch, patch)
    state["x_embedder.proj.bias"] = rand(hidden)
    state["t_embedder.mlp.0.weight"] = rand(hidden, 256)
    state["t_embedder.mlp.0.bias"] = rand(hidden)
    state["t_embedder.mlp.2.weight"] = rand(hidden, hidden)
    state["t_embedder.mlp.2.bias"] = rand(hidden)
    state[LABEL_TABLE] = rand(1001, hidden)  # 1000 ImageNet classes + the null class
    for i in range(depth):
        state[f"blocks.{i}.attn.qkv.weight"] = rand(3 * hidden, hidden)
        state[f"blocks.{i}.attn.qkv.bias"] = rand(3 * hidden)
        state[f"blocks.{i}.attn.proj.weight"] = rand(hidden, hidden)
        state[f"blocks.{i}.attn.proj.bias"] = rand(hidden)
        state[f"blocks.{i}.mlp.fc1.weight"] = rand(mlp, hidden)
        state[f"blocks.{i}.mlp.fc1.bias"] = rand(mlp)
        state[f"blocks.{i}.mlp.fc2.weight"] = rand(hidden, mlp)
        state[f"blocks.{i}.mlp.fc2.bias"] = rand(hidden)
        state[f"blocks.{i}.adaLN_modulation.1.weight"] = rand(6 * hidden, hidden)
        state[f"blocks.{i}.adaLN_modulation.1.bias"] = rand(6 * hidden)
    state["final_layer.linear.weight"] = rand(patch * patch * out_channels, hidden)
    state["final_layer.linear.bias"] = rand(patch * patch * out_channels)
    state["final_layer.adaLN_modulation.1.weight"] = rand(2 * hidden, hidden)
    state["final_layer.adaLN_modulation.1.bias"] = rand(2 * hidden)
    return state


def save(state: object, path: Path) -> Path:
    torch.save(state, path)
    return path


def tiny_latte(**overrides: object) -> Latte:
    kwargs = dict(
        size="tiny", depth=2, hidden_size=32, num_heads=2, in_channels=4, input_size=8, num_frames=4
    )
    kwargs.update(overrides)
    return Latte(**kwargs)


def copied_keys(state: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in state if k not in ("pos_embed", LABEL_TABLE)]


# ------------------------------------------------------------------------------------------ tests
def test_dit_checkpoint_loads_with_the_documented_report(tmp_path):
    dit = dit_state_dict()
    path = save(dit, tmp_path / "DiT-tiny.pt")
    model = tiny_latte(num_classes=3)
    report = init_from_dit(model, path)

    assert report.source == "state_dict" and report.path == str(path)
    assert report.loaded == copied_keys(dit)  # every block: Latte block i <- DiT block i
    assert report.tiled == ["pos_embed"]  # equal to the model's table, which every frame uses
    assert report.skipped == [LABEL_TABLE]  # ImageNet's 1001-row table
    assert report.new == [LABEL_TABLE]  # the model's own label table: zero-initialised
    assert report.mismatched == []
    state = model.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], dit[key]), key
    assert torch.equal(state[LABEL_TABLE], torch.zeros(4, 32))
    assert torch.allclose(model.pos_embed, dit["pos_embed"][0], atol=1e-6)
    labels = Cond(labels=torch.tensor([0, 3]))  # class 0 and the null class
    out = model(torch.randn(2, 4, 4, 8, 8), torch.tensor([3, 700]), labels)
    assert out.shape == (2, 8, 4, 8, 8) and torch.isfinite(out).all()

    written = report.write(tmp_path / "report.json")
    assert json.loads(written.read_text()) == report.to_dict()
    assert "0 mismatched" in report.summary() and f"{len(report.loaded)} loaded" in report.summary()


def test_unconditional_model_and_depth_differences(tmp_path):
    deeper = dit_state_dict(depth=3)
    report = init_from_dit(tiny_latte(depth=2), save(deeper, tmp_path / "deep.pt"))
    extra = [k for k in deeper if k.startswith("blocks.2.")]
    assert report.skipped == [LABEL_TABLE, *extra] and report.new == []
    assert report.loaded == [k for k in copied_keys(deeper) if k not in extra]

    model = tiny_latte(depth=3)
    report = init_from_dit(model, save(dit_state_dict(depth=2), tmp_path / "shallow.pt"))
    assert report.new == [k for k in model.state_dict() if k.startswith("blocks.2.")]
    assert report.skipped == [LABEL_TABLE] and report.mismatched == []


def test_training_checkpoint_uses_the_ema_weights(tmp_path):
    raw, ema = dit_state_dict(seed=1), dit_state_dict(seed=2)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]).state_dict()
    args = argparse.Namespace(model="DiT-XL/2", image_size=256)  # what DiT's train.py stores
    path = save({"model": raw, "ema": ema, "opt": optimizer, "args": args}, tmp_path / "0050000.pt")
    model = tiny_latte()
    report = init_from_dit(model, path)
    assert report.source == "ema"
    assert torch.equal(model.state_dict()["blocks.1.mlp.fc2.weight"], ema["blocks.1.mlp.fc2.weight"])

    report = init_from_dit(model, save({"model": raw}, tmp_path / "model_only.pt"))
    assert report.source == "model"
    assert torch.equal(model.state_dict()["blocks.1.mlp.fc2.weight"], raw["blocks.1.mlp.fc2.weight"])


def test_shape_mismatch_is_reported_not_raised(tmp_path):
    # learn_sigma=False: final layer for C, not 2C, outputs; a 64-patch grid: another position table
    dit = dit_state_dict(learn_sigma=False, grid=8)
    model = tiny_latte()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_dit(model, save(dit, tmp_path / "other.pt"))
    mismatched = ["pos_embed", "final_layer.linear.weight", "final_layer.linear.bias"]
    assert report.mismatched == mismatched and report.tiled == []
    assert report.loaded == [k for k in copied_keys(dit) if k not in mismatched]
    state = model.state_dict()
    assert torch.equal(state["final_layer.linear.weight"], before["final_layer.linear.weight"])
    assert "(16, 32)" in report.notes["final_layer.linear.weight"]
    assert "(32, 32)" in report.notes["final_layer.linear.weight"]
    assert "(1, 64, 32)" in report.notes["pos_embed"]
    assert "mismatched final_layer.linear.bias" in report.summary()

    dit = dit_state_dict()
    dit["pos_embed"] = dit["pos_embed"] + 0.1  # same shape, other values: not the sin-cos table
    report = init_from_dit(tiny_latte(), save(dit, tmp_path / "moved.pt"))
    assert report.mismatched == ["pos_embed"] and "values differ" in report.notes["pos_embed"]


def test_tube_embedding_kernel_is_tiled_across_frames(tmp_path):
    dit = dit_state_dict()
    model = tiny_latte(patch_embed="tube", tube_stride=2)
    report = init_from_dit(model, save(dit, tmp_path / "dit.pt"))
    tiled = ["pos_embed", "x_embedder.proj.weight", "final_layer.linear.weight", "final_layer.linear.bias"]
    assert sorted(report.tiled) == sorted(tiled) and report.mismatched == []
    assert report.new == [k for k in model.state_dict() if k not in dit]
    # the widened tube decoder: every frame block of (p1 p2 s c) is DiT's decoder, so with the upsampler's
    # channel-block selection both frames of a tube decode a token as DiT does
    token = torch.randn(3, model.hidden_size, dtype=model.final_layer.linear.weight.dtype)
    ours = model.final_layer.linear(token).view(3, 2, 2, 2, -1)  # (n, p1, p2, s, c)
    theirs = token @ dit["final_layer.linear.weight"].to(token).T + dit["final_layer.linear.bias"].to(token)
    for k in range(2):
        torch.testing.assert_close(ours[:, :, :, k].reshape(3, -1), theirs)
    weight = model.state_dict()["x_embedder.proj.weight"]  # (D, C, 2, p, p)
    bias = model.state_dict()["x_embedder.proj.bias"]
    frame = torch.randn(1, 4, 8, 8)
    clip = frame.unsqueeze(2).expand(1, 4, 2, 8, 8)  # two equal frames
    tube = F.conv3d(clip, weight, bias, stride=(2, 2, 2))[:, :, 0]
    torch.testing.assert_close(tube, F.conv2d(frame, dit["x_embedder.proj.weight"], bias, stride=2))


def test_missing_or_foreign_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        init_from_dit(tiny_latte(), tmp_path / "DiT-XL-2-256x256.pt")
    assert info.value.key == "pretrained.path" and "DiT-XL-2-256x256.pt" in str(info.value)
    foreign = save({"encoder.weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(ConfigError) as info:
        init_from_dit(tiny_latte(), foreign)
    assert info.value.key == "pretrained.path" and "key layout" in str(info.value)


def _module_overrides(tmp_path: Path) -> list[str]:
    # patch 2 (the demo recipe's is 4): the DiT below has an 8x8 grid; Latte's diffusion (the demo recipe's
    # has a fixed variance): DiT learns the variance, 2C outputs as the checkpoint's final layer
    return [
        *TINY, "model.patch_size=2", "diffusion=latte", "logger=csv", f"pretrained.path={tmp_path / 'dit.pt'}"
    ]  # fmt: skip


def _tiny_dit_for_train(tmp_path: Path) -> OrderedDict[str, torch.Tensor]:
    # TINY: pixels (3 channels, identity autoencoder) at 16x16, patch 2 -> an 8x8 grid, hidden 32, depth 2
    dit = dit_state_dict(in_channels=3, grid=8)
    save(dit, tmp_path / "dit.pt")
    return dit


def test_ema_twin_equals_the_initialised_denoiser(tmp_path):
    dit = _tiny_dit_for_train(tmp_path)
    cfg = compose_config(_module_overrides(tmp_path), run_dir=tmp_path / "run")
    module = build_module(cfg)
    report = init_module_from_pretrained(module, cfg.pretrained.path, cfg.pretrained.kind)
    assert report.loaded == copied_keys(dit) and report.tiled == ["pos_embed"]
    denoiser, ema = module.denoiser.state_dict(), module.ema_denoiser.state_dict()
    assert denoiser.keys() == ema.keys()
    for key in denoiser:
        assert torch.equal(denoiser[key], ema[key]), key
    assert torch.equal(ema["blocks.0.attn.qkv.weight"], dit["blocks.0.attn.qkv.weight"])


def test_train_applies_the_init_and_writes_the_report(tmp_path):
    from vidgen.lit.training import train
    from vidgen.models.pretrained import apply_pretrained

    dit = _tiny_dit_for_train(tmp_path)
    overrides = [
        *_module_overrides(tmp_path),
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "samples.num_videos=0",
        "samples.final_num_videos=0",
    ]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    summary = train(cfg)
    assert summary["global_step"] == 2
    report = json.loads((tmp_path / "run" / "pretrained_report.json").read_text())
    assert report["loaded"] == copied_keys(dit) and report["tiled"] == ["pos_embed"]
    assert report["skipped"] == [LABEL_TABLE] and report["new"] == [] and report["mismatched"] == []

    # resuming: the checkpoint's weights win, nothing is applied or written
    module = build_module(cfg)
    before = {k: v.clone() for k, v in module.denoiser.state_dict().items()}
    apply_pretrained(module, cfg, tmp_path / "run" / "checkpoints" / "last.ckpt", tmp_path / "resumed")
    assert not (tmp_path / "resumed").exists()
    assert all(torch.equal(before[k], v) for k, v in module.denoiser.state_dict().items())


def test_config_node_is_validated_and_a_missing_file_names_the_key(tmp_path):
    from vidgen.lit.training import train

    cfg = compose_config(["pretrained.kind=imagenet"], run_dir=tmp_path / "a")
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == "pretrained.kind"
    cfg = compose_config([], run_dir=tmp_path / "b")
    assert cfg.pretrained.path is None and cfg.pretrained.kind == "dit"
    cfg = compose_config([*TINY, f"pretrained.path={tmp_path / 'missing_dit.pt'}"], run_dir=tmp_path / "c")
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert info.value.key == "pretrained.path" and "missing_dit.pt" in str(info.value)
    assert isinstance(PretrainedReport(path="x", source="ema").to_dict()["loaded"], list)
