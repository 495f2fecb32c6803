"""Exact conversions between the eps, x0 and v parameterisations of a Gaussian diffusion.

With ``a = sqrt(alpha_bar_t)`` and ``s = sqrt(1 - alpha_bar_t)`` (so ``a**2 + s**2 = 1``):

* ``x_t = a * x0 + s * eps``
* ``v   = a * eps - s * x0``   (Salimans & Ho, 2022; VDM)

Every function takes tensors of any shape ``(B, ...)``; ``a`` and ``s`` broadcast against them
(typically ``(B, 1, ..., 1)``). Outputs have the broadcast shape.
"""

from __future__ import annotations

import torch

PREDICTIONS = ("eps", "v", "x0")


def check_prediction(kind: str) -> str:
    """Return ``kind`` if it is a known prediction type, else raise ``ValueError``."""
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction type {kind!r}; allowed: {', '.join(PREDICTIONS)}")
    return kind


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``x0 = (x_t - s * eps) / a``."""
    return (x_t - s * eps) / a


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``eps = (x_t - a * x0) / s``."""
    return (x_t - a * x0) / s


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``v = a * eps - s * x0``."""
    return a * eps - s * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``x0 = a * x_t - s * v`` (uses ``a**2 + s**2 = 1``)."""
    return a * x_t - s * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``eps = s * x_t + a * v`` (uses ``a**2 + s**2 = 1``)."""
    return s * x_t + a * v


def prediction_to_x0_eps(
    prediction: torch.Tensor, x_t: torch.Tensor, kind: str, a: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a model prediction of type ``kind`` (``"eps" | "v" | "x0"``) at ``x_t`` into ``(x0, eps)``.

    Args:
        prediction: ``(B, C, ...)`` the prediction channels only (no variance channels).
        x_t: ``(B, C, ...)`` noisy input.
        kind: what ``prediction`` is.
        a, s: ``sqrt(alpha_bar_t)`` and ``sqrt(1 - alpha_bar_t)``, broadcastable to ``x_t``.

    Returns:
        ``(pred_x0, pred_eps)``, each ``(B, C, ...)``.
    """
    check_prediction(kind)
    if kind == "eps":
        return x0_from_eps(x_t, prediction, a, s), prediction
    if kind == "x0":
        return prediction, eps_from_x0(x_t, prediction, a, s)
    return x0_from_v(x_t, prediction, a, s), eps_from_v(x_t, prediction, a, s)


def prediction_target(
    kind: str, x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor, s: torch.Tensor
) -> torch.Tensor:
    """Regression target of a ``kind`` model for clean data ``x0`` noised with ``eps``: eps, x0 or v.

    Shapes: ``x0``, ``eps`` ``(B, C, ...)``; ``a``, ``s`` broadcastable; returns ``(B, C, ...)``.
    """
    check_prediction(kind)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    return v_from_x0_eps(x0, eps, a, s)


def min_snr_weight(kind: str, snr: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weight (Hang et al. 2023) of a ``kind`` model's MSE at signal-to-noise ratio ``snr``.

    The x0 error weighted by ``min(snr, gamma)``, written for each target: ``min(snr, gamma)`` for x0,
    ``min(snr, gamma) / snr`` for eps (``||eps err||^2 = snr ||x0 err||^2``), ``min(snr, gamma) / (snr + 1)``
    for v (``||v err||^2 = (snr + 1) ||x0 err||^2``). Shape: that of ``snr``.
    """
    check_prediction(kind)
    clipped = snr.clamp(max=gamma)
    if kind == "x0":
        return clipped
    if kind == "eps":
        return clipped / snr
    return clipped / (snr + 1)
