"""eps / x0 / v conversions are exact inverses of each other."""

import pytest
import torch

from vidgen.diffusion import (
    PREDICTIONS,
    eps_from_v,
    eps_from_x0,
    prediction_target,
    prediction_to_x0_eps,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)


def _batch() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    shape = (6, 3, 2, 4, 4)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    alpha_bar = torch.linspace(0.01, 0.99, shape[0], dtype=torch.float64).reshape(-1, 1, 1, 1, 1)
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    return x0, eps, a, s, a * x0 + s * eps


def test_round_trips_are_exact() -> None:
    x0, eps, a, s, x_t = _batch()
    v = v_from_x0_eps(x0, eps, a, s)
    tol = {"rtol": 0, "atol": 1e-10}
    torch.testing.assert_close(x0_from_eps(x_t, eps, a, s), x0, **tol)
    torch.testing.assert_close(eps_from_x0(x_t, x0, a, s), eps, **tol)
    torch.testing.assert_close(x0_from_v(x_t, v, a, s), x0, **tol)
    torch.testing.assert_close(eps_from_v(x_t, v, a, s), eps, **tol)
    # v -> x0 -> eps -> v
    x0_back = x0_from_v(x_t, v, a, s)
    torch.testing.assert_close(v_from_x0_eps(x0_back, eps_from_x0(x_t, x0_back, a, s), a, s), v, **tol)


@pytest.mark.parametrize("kind", PREDICTIONS)
def test_prediction_to_x0_eps_and_target(kind: str) -> None:
    x0, eps, a, s, x_t = _batch()
    target = prediction_target(kind, x0, eps, a, s)
    expected_target = {"eps": eps, "x0": x0, "v": a * eps - s * x0}[kind]
    torch.testing.assert_close(target, expected_target, rtol=0, atol=1e-12)
    pred_x0, pred_eps = prediction_to_x0_eps(target, x_t, kind, a, s)
    torch.testing.assert_close(pred_x0, x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(pred_eps, eps, rtol=0, atol=1e-10)


def test_unknown_prediction() -> None:
    x0, _, a, s, x_t = _batch()
    with pytest.raises(ValueError, match="eps, v, x0"):
        prediction_to_x0_eps(x0, x_t, "score", a, s)
