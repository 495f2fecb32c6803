"""Learning sanity: a tiny Latte overfits one synthetic batch."""

from __future__ import annotations

import torch

from tests.conftest import compose_config
from vidgen.config.instantiate import instantiate_node
from vidgen.lit.build import build_module


def test_tiny_latte_overfits_one_synthetic_batch(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = compose_config(
        [
            "model.depth=2",
            "model.hidden_size=64",
            "model.num_heads=4",
            "model.patch_size=4",
            "data.num_frames=4",
            "data.resolution=16",
            "data.batch_size=4",
            "ema.enabled=false",
            "diffusion.prediction=eps",  # so the initial eps-MSE is exactly E[eps^2] = 1
        ],
        run_dir=tmp_path,
    )
    batch = next(iter(instantiate_node(cfg.data).train_dataloader()))
    module = build_module(cfg)
    optimizer = torch.optim.AdamW(module.denoiser.parameters(), lr=2e-3)
    probe = torch.Generator().manual_seed(123)  # a fixed set of (t, noise) to measure the loss on

    def probe_loss() -> float:
        with torch.no_grad():
            probe.manual_seed(123)
            return module._diffusion_losses(module.denoiser, batch, probe, train=False)["mse"].mean().item()

    before = probe_loss()
    for step in range(80):  # measured: eps-MSE 1.02 -> 0.22 at step 40, 0.09 at 80, 0.07 at 200
        losses = module._diffusion_losses(
            module.denoiser, batch, torch.Generator().manual_seed(step), train=True
        )
        optimizer.zero_grad()
        losses["loss"].mean().backward()
        optimizer.step()
    after = probe_loss()
    # at initialisation the output is zero, so the eps-MSE is E[eps^2] = 1
    assert abs(before - 1.0) < 0.1
    assert after < before / 5, f"eps-MSE only fell from {before:.3f} to {after:.3f}"
