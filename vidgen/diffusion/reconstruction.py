"""Conditional sampling of an unconditionally trained model: replacement and reconstruction guidance (VDM §3.1).

A window ``z = [z^a, z^b]`` of frames holds given frames ``A`` (data ``x^a``) and frames ``B`` to generate.

* Replacement (Song et al. 2021): before every model evaluation at level ``t``, ``z^a`` is replaced by a
  fresh forward sample ``alpha_t x^a + sigma_t xi``; ``z^b`` takes the ordinary step.
* Reconstruction guidance (eq. 7): the data prediction of ``B`` is corrected by
  ``x~^b = x^^b - (w_r alpha_t / 2) grad_{z^b} ||x^a - x^^a(z)||^2`` (a sum of squares; the gradient goes
  through the denoiser, one vector-Jacobian product per evaluation), and ``z^a`` is still replaced. With
  ``w_r = 0`` the samples are the replacement method's, bit for bit (the same random draws).
* Spatial super-resolution (eq. 8): ``x~ = x^ - (w_r alpha_t / 2) grad_z ||y - D(x^(z))||^2`` over the whole
  window through a differentiable downsampler ``D``, no replacement; ``w_r = 0`` is unconditional sampling.

A :class:`Guide` is handed to a :class:`~vidgen.diffusion.guided_samplers.LevelSampler`, which calls
:meth:`Guide.replace` before each model evaluation, :meth:`Guide.correction` on the data prediction (with its
autograd graph back to ``z``) and :meth:`Guide.finish` on the final sample. Classifier-free guidance, when
used, is already inside the sampler's ``model_fn``, so these corrections act on the guided prediction.
Videos are ``(B, C, F, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "DOWNSAMPLERS",
    "FrameGuide",
    "GuidanceError",
    "Guide",
    "SuperResolutionGuide",
    "make_downsampler",
]

DOWNSAMPLERS = ("area", "bilinear")


class GuidanceError(RuntimeError):
    """A guidance gradient became NaN or Inf (too large a weight for the step count, usually)."""


def _randn_like_on(
    shape: Sequence[int], generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device, then moved next to ``like``."""
    source = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=source, dtype=like.dtype).to(like.device)


class Guide:
    """One conditioning term of a guided sampler. The base class changes nothing.

    Args:
        weight: ``w_r`` of eq. 7 / 8.
        gradient: the term needs the gradient through the denoiser (reconstruction guidance, even at
            ``w_r = 0``); ``False`` for plain replacement.
        nan_to_num: replace non-finite entries of the correction by 0 instead of raising
            :class:`GuidanceError`.
        weight_key: how the weight is called where the user sets it (for error messages).
    """

    def __init__(
        self, weight: float, gradient: bool, nan_to_num: bool = False, weight_key: str = "weight"
    ) -> None:
        if weight < 0:
            raise ValueError(f"{weight_key} must be >= 0, got {weight}")
        self.weight = float(weight)
        self.gradient = bool(gradient)
        self.nan_to_num = bool(nan_to_num)
        self.weight_key = weight_key
        self.errors: list[torch.Tensor] = []
        """``()`` detached reconstruction losses ``||x^a - x^^a||^2`` (or ``||y - D(x^)||^2``), one per
        guided model evaluation, in sampling order (kept for diagnostics and tests)."""

    def replace(
        self, z: torch.Tensor, alpha: float, sigma: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """``z`` with its given part replaced by a forward sample at level ``(alpha, sigma)``."""
        return z

    def loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``()`` reconstruction loss of the data prediction ``x_hat`` ``(B, C, F, H, W)``."""
        raise NotImplementedError

    def gradient_mask(self, grad: torch.Tensor) -> torch.Tensor:
        """The part of ``grad`` (``(B, C, F, H, W)``, w.r.t. ``z``) that corrects the prediction."""
        return grad

    def correction(
        self, x_hat: torch.Tensor, z: torch.Tensor, alpha: float, retain_graph: bool
    ) -> torch.Tensor:
        """``(w_r alpha / 2) grad_z loss(x_hat)``, masked, detached: what the sampler subtracts from ``x_hat``.

        Args:
            x_hat: ``(B, C, F, H, W)`` data prediction, a function of ``z`` with its autograd graph.
            z: ``(B, C, F, H, W)`` the leaf the model was evaluated at (``requires_grad``).
            alpha: ``alpha_t`` of the level.
            retain_graph: keep the graph for another guide.

        Raises:
            GuidanceError: the correction is not finite (unless ``nan_to_num``).
        """
        loss = self.loss(x_hat)
        self.errors.append(loss.detach())
        (grad,) = torch.autograd.grad(loss, z, retain_graph=retain_graph, allow_unused=True)
        if grad is None:  # the loss does not depend on z (e.g. no given frame)
            grad = torch.zeros_like(z)
        step = (0.5 * self.weight * alpha) * self.gradient_mask(grad.detach())
        if not bool(torch.isfinite(step).all()):
            if not self.nan_to_num:
                raise GuidanceError(
                    f"the reconstruction-guidance gradient is not finite ({self.weight_key}={self.weight}, "
                    f"alpha_t={alpha:.3g}): lower {self.weight_key}, sample with more steps, or set the "
                    "guidance's nan_to_num to zero the non-finite entries"
                )
            step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        return step

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The final sample ``x`` ``(B, C, F, H, W)`` with its given part restored."""
        return x


class FrameGuide(Guide):
    """Given frames ``A`` of a window: replacement (``method="replacement"``) or reconstruction guidance.

    Args:
        known: ``(B, C, |A|, H, W)`` the data ``x^a`` of the given frames, in the order of ``frames``.
        frames: the window positions ``A`` (distinct, on dim 2); may be empty (then nothing is conditioned
            and the samples are unconditional ones, bit for bit).
        weight: ``w_r`` (``0`` for replacement).
        method: ``"reconstruction"`` (eq. 7 + replacement) or ``"replacement"`` (no gradient; ``weight`` 0).
        nan_to_num, weight_key: see :class:`Guide`.
    """

    METHODS = ("reconstruction", "replacement")

    def __init__(
        self,
        known: torch.Tensor,
        frames: Sequence[int],
        weight: float = 0.0,
        method: str = "reconstruction",
        nan_to_num: bool = False,
        weight_key: str = "weight",
    ) -> None:
        if method not in self.METHODS:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(self.METHODS)}")
        if method == "replacement" and weight != 0:
            raise ValueError(f"the replacement method has no weight; got {weight_key}={weight}")
        super().__init__(
            weight, gradient=method == "reconstruction", nan_to_num=nan_to_num, weight_key=weight_key
        )
        frames = [int(f) for f in frames]
        if len(set(frames)) != len(frames) or any(f < 0 for f in frames):
            raise ValueError(f"frames must be distinct indices >= 0, got {frames}")
        if known.dim() != 5 or known.shape[2] != len(frames):
            raise ValueError(
                f"known must be (B, C, {len(frames)}, H, W) for frames {frames}, got {tuple(known.shape)}"
            )
        self.known = known
        self.frames = frames
        self.method = method

    def _index(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.frames, dtype=torch.int64, device=like.device)

    def replace(
        self, z: torch.Tensor, alpha: float, sigma: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        if not self.frames:
            return z
        known = self.known.to(device=z.device, dtype=z.dtype)
        xi = _randn_like_on(known.shape, generator, z)
        return z.index_copy(2, self._index(z), alpha * known + sigma * xi)

    def loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``sum((x^a - x^^a)^2)`` over every element of the given frames (all samples)."""
        predicted = x_hat.index_select(2, self._index(x_hat))
        return (self.known.to(device=x_hat.device, dtype=x_hat.dtype) - predicted).square().sum()

    def gradient_mask(self, grad: torch.Tensor) -> torch.Tensor:
        """Only ``z^b`` is corrected: the gradient w.r.t. the given frames is dropped."""
        if not self.frames:
            return grad
        return grad.index_fill(2, self._index(grad), 0.0)

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The given frames are ``x^a`` exactly."""
        if not self.frames:
            return x
        return x.index_copy(2, self._index(x), self.known.to(device=x.device, dtype=x.dtype))


def make_downsampler(mode: str, size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable frame-wise downsampler ``D``: ``(B, C, F, H, W) -> (B, C, F, h, w)``.

    ``"area"``: the mean of each input cell (adaptive average pooling; exact 2x2 means for a factor 2);
    ``"bilinear"``: bilinear interpolation without anti-aliasing (``antialias`` has no gradient path on
    some backends).
    """
    if mode not in DOWNSAMPLERS:
        raise ValueError(f"unknown downsampler {mode!r}; allowed: {', '.join(DOWNSAMPLERS)}")
    height, width = (int(s) for s in size)

    def downsample(video: torch.Tensor) -> torch.Tensor:
        batch = video.shape[0]
        frames = video.transpose(1, 2).flatten(0, 1)  # (B*F, C, H, W)
        if mode == "area":
            small = F.adaptive_avg_pool2d(frames, (height, width))
        else:
            small = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False)
        return small.unflatten(0, (batch, -1)).transpose(1, 2)

    return downsample


class SuperResolutionGuide(Guide):
    """Spatial super-resolution guidance (eq. 8): ``D(x^)`` is pulled towards the low-resolution ``y``.

    Args:
        lowres: ``(B, C, F, h, w)`` the low-resolution target ``y``.
        downsample: ``D``, ``(B, C, F, H, W) -> (B, C, F, h, w)``, differentiable.
        weight: ``w_r``; ``0`` gives the unconditional samples bit for bit.
        nan_to_num, weight_key: see :class:`Guide`.
    """

    def __init__(
        self,
        lowres: torch.Tensor,
        downsample: Callable[[torch.Tensor], torch.Tensor],
        weight: float,
        nan_to_num: bool = False,
        weight_key: str = "weight",
    ) -> None:
        super().__init__(weight, gradient=True, nan_to_num=nan_to_num, weight_key=weight_key)
        if lowres.dim() != 5:
            raise ValueError(f"lowres must be (B, C, F, h, w), got {tuple(lowres.shape)}")
        self.lowres = lowres
        self.downsample = downsample

    def loss(self, x_hat: torch.Tensor) -> torch.Tensor:
        """``sum((y - D(x^))^2)`` over all elements."""
        small = self.downsample(x_hat)
        if small.shape != self.lowres.shape:
            raise ValueError(
                f"D(x_hat) has shape {tuple(small.shape)}, the low-resolution target {tuple(self.lowres.shape)}"
            )
        return (self.lowres.to(device=x_hat.device, dtype=x_hat.dtype) - small).square().sum()
