"""Min-SNR-gamma loss weighting: every prediction target's weighted MSE is min(SNR, gamma) x the x0 error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import compose_config
from vidgen.config.errors import ConfigError
from vidgen.config.schema import validate_config
from vidgen.diffusion import build_diffusion
from vidgen.diffusion.respace import respace


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_weighted_loss_is_min_snr_times_the_x0_error(prediction: str) -> None:
    gamma = 5.0
    diffusion = build_diffusion(
        "cosine", 1000, prediction=prediction, learn_sigma=False, loss="simple", min_snr_gamma=gamma
    )
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 2, 4, 4, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    error = 0.1 * torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 50, 200, 500, 800, 999])  # SNR from ~10^5 down to ~10^-8: both sides of gamma
    abar = diffusion.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    a, s = abar.sqrt(), (1 - abar).sqrt()

    def model(x_t: torch.Tensor, _t: torch.Tensor) -> torch.Tensor:
        x0_hat = x0 + error  # the prediction that means this x0 at x_t, in the model's target
        eps_hat = (x_t - a * x0_hat) / s
        return {"x0": x0_hat, "eps": eps_hat, "v": a * eps_hat - s * x0_hat}[prediction]

    terms = diffusion.training_losses(model, x0, t, noise)
    snr = (abar / (1 - abar)).flatten()
    expected = snr.clamp(max=gamma) * error.pow(2).flatten(1).mean(1)
    torch.testing.assert_close(terms["loss"], expected, rtol=2e-3, atol=1e-7)
    # the logged mse stays the unweighted error of the target
    unweighted = build_diffusion("cosine", 1000, prediction=prediction, learn_sigma=False, loss="simple")
    torch.testing.assert_close(terms["mse"], unweighted.training_losses(model, x0, t, noise)["loss"])


def test_respacing_keeps_the_weighting_and_bad_gamma_is_refused(tmp_path: Path) -> None:
    diffusion = build_diffusion(
        "linear", 1000, prediction="v", learn_sigma=False, loss="simple", min_snr_gamma=5
    )
    assert respace(diffusion, range(0, 1000, 100)).min_snr_gamma == 5.0
    with pytest.raises(ValueError, match="min_snr_gamma"):
        build_diffusion(min_snr_gamma=0.0)
    cfg = compose_config(["diffusion.min_snr_gamma=-1"], run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"diffusion\.min_snr_gamma"):
        validate_config(cfg)
    assert (
        compose_config(["recipe_diffusion.min_snr_gamma=2"], run_dir=tmp_path / "run").diffusion.min_snr_gamma
        == 2
    )
