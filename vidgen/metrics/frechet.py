"""Gaussian feature statistics and the Frechet distance between them (FID / FVD).

Statistics are accumulated in float64. The covariance is the biased one (divide by ``N``) by default, as in
StyleGAN-V's FVD protocol; ``unbiased=True`` divides by ``N - 1`` (``numpy.cov``'s default, used by some other
code bases). The distance uses ``scipy.linalg.sqrtm`` for the matrix square root, as pytorch-fid and StyleGAN-V
do, so values agree with theirs up to floating point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

__all__ = ["FeatureAccumulator", "FeatureStats", "frechet_distance"]

#: how large the imaginary part of ``sqrtm``'s diagonal may be (relative to its real part, floor 1) before the
#: result is refused; pytorch-fid uses an absolute 1e-3.
IMAGINARY_TOLERANCE = 1e-3


def _as_float64_matrix(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().double().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"features must be a 2-D array (N, D), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("features contain NaN or infinite values")
    return array


def _covariance_from_sums(n: int, total: np.ndarray, total_outer: np.ndarray, unbiased: bool) -> np.ndarray:
    mean = total / n
    scatter = total_outer - n * np.outer(mean, mean)
    sigma = scatter / (n - 1 if unbiased else n)
    return (sigma + sigma.T) / 2  # exact symmetry; the sums are symmetric up to rounding


def _check_count(n: int) -> None:
    if n < 2:
        raise ValueError(f"the covariance needs at least 2 clips (feature vectors), got {n}")


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Mean and covariance of a set of feature vectors.

    Attributes:
        mu: ``(D,)`` float64 mean.
        sigma: ``(D, D)`` float64 covariance.
        n: number of feature vectors they summarise.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"mu must be (D,) and sigma (D, D); got {mu.shape} and {sigma.shape}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "n", int(self.n))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor, unbiased: bool = False) -> FeatureStats:
        """Statistics of ``(N, D)`` features; ``unbiased`` divides the scatter by ``N - 1`` instead of ``N``."""
        array = _as_float64_matrix(features)
        n = array.shape[0]
        _check_count(n)
        mu = array.mean(axis=0)
        centered = array - mu
        sigma = centered.T @ centered / (n - 1 if unbiased else n)
        return cls(mu=mu, sigma=(sigma + sigma.T) / 2, n=n)


class FeatureAccumulator:
    """Running float64 sums of feature vectors (count, sum, sum of outer products), mergeable batch by batch.

    The sums can be written to and restored from a dict of arrays (:meth:`state` / :meth:`from_state`) to cache
    the statistics of a real dataset.
    """

    STATE_KEYS = ("num", "sum", "sum_outer")

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"feature dimension must be positive, got {dim}")
        self.dim = int(dim)
        self.num = 0
        self.sum = np.zeros(self.dim, dtype=np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, features: np.ndarray | torch.Tensor) -> None:
        """Add ``(N, D)`` features."""
        array = _as_float64_matrix(features)
        if array.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d features, got shape {array.shape}")
        self.num += array.shape[0]
        self.sum += array.sum(axis=0)
        self.sum_outer += array.T @ array

    def stats(self, unbiased: bool = False) -> FeatureStats:
        """Mean and covariance of everything added so far (at least 2 vectors)."""
        _check_count(self.num)
        mu = self.sum / self.num
        return FeatureStats(
            mu=mu, sigma=_covariance_from_sums(self.num, self.sum, self.sum_outer, unbiased), n=self.num
        )

    def state(self) -> dict[str, np.ndarray]:
        """The sums as arrays (for an ``.npz`` cache)."""
        return {
            "num": np.asarray(self.num, dtype=np.int64),
            "sum": self.sum.copy(),
            "sum_outer": self.sum_outer.copy(),
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> FeatureAccumulator:
        """Rebuild an accumulator from :meth:`state`'s arrays, checking their shapes."""
        missing = [key for key in cls.STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"feature statistics state lacks {missing}; has {sorted(state)}")
        total = np.asarray(state["sum"], dtype=np.float64)
        total_outer = np.asarray(state["sum_outer"], dtype=np.float64)
        num = np.asarray(state["num"])
        if total.ndim != 1 or total_outer.shape != (total.shape[0], total.shape[0]) or num.size != 1:
            raise ValueError(
                f"inconsistent feature statistics state: num {num.shape}, sum {total.shape}, "
                f"sum_outer {total_outer.shape}"
            )
        accumulator = cls(total.shape[0])
        accumulator.num = int(num.reshape(()))
        if accumulator.num < 0:
            raise ValueError(f"feature statistics state has a negative count {accumulator.num}")
        accumulator.sum = total.copy()
        accumulator.sum_outer = total_outer.copy()
        return accumulator


def _sqrtm_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> np.ndarray:
    """``sqrtm(sigma_a @ sigma_b)`` with pytorch-fid's fallback for a singular product (a tiny diagonal offset)."""
    root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(root).all():
        eps = 1e-6
        warnings.warn(
            f"sqrtm of the covariance product is not finite (singular product); adding {eps} to the diagonals",
            RuntimeWarning,
            stacklevel=3,
        )
        offset = np.eye(sigma_a.shape[0]) * eps
        root = scipy.linalg.sqrtm((sigma_a + offset) @ (sigma_b + offset))
    return np.asarray(root)


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance of two Gaussians: ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b))``.

    A negligible imaginary part of the square root (numerical noise) is dropped; a large one raises
    ``ValueError``, as in pytorch-fid.
    """
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    root = _sqrtm_product(a.sigma, b.sigma)
    if np.iscomplexobj(root):
        diagonal = np.diagonal(root)
        scale = max(1.0, float(np.max(np.abs(diagonal.real))))
        largest = float(np.max(np.abs(diagonal.imag)))
        if largest > IMAGINARY_TOLERANCE * scale:
            raise ValueError(
                f"sqrtm of the covariance product has an imaginary component {largest:.3g} on its diagonal "
                "(not negligible); the statistics are ill-conditioned (too few clips for the feature dimension?)"
            )
        root = root.real
    distance = diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * np.trace(root)
    return float(distance)
