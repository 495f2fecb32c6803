"""UCF101 video Inception Score with a UCF101-fine-tuned C3D.

Protocol. The video IS of TGAN (Saito et al. 2017), TGANv2, DIGAN, StyleGAN-V and Latte uses C3D (Tran et al.
2015) fine-tuned on UCF101 (Caffe ``c3d_ucf101_finetune_whole_iter_20000``), run as TGANv2's Chainer model
``C3DVersion1UCF101``; StyleGAN-V ships a TorchScript port of it (``c3d_ucf101.pt``) that takes uint8 clips.
Papers differ in the sample count and splits:

- StyleGAN-V / DIGAN protocol (Latte's evaluation, the default here): 2048 generated videos of 16 frames,
  1 split.
- TGAN / TGANv2 protocol: 10,000 videos, 10 splits (``num_fake=10000, splits=10``).

Network. :class:`C3D` has the key layout of the common PyTorch C3D port (``conv1, conv2, conv3a, conv3b, conv4a,
conv4b, conv5a, conv5b, fc6, fc7, fc8``; fc8 with 101 UCF101 classes), plus a ``mean`` buffer: the BGR mean clip
``(3, 16, 112, 112)`` subtracted from the input (TGANv2: ``mean2.npz['mean'][:, :, 8:120, 8:120]``). All
poolings round up (``ceil_mode``, as Caffe's pooling and Chainer's ``cover_all``), so pool5 maps
``512 x 2 x 7 x 7`` to ``512 x 1 x 4 x 4`` (fc6 takes 8192 inputs). Dropout is omitted (evaluation only).

Input conversion (:func:`c3d_clips`, the one place), following TGANv2's ``C3DVersion1UCF101`` preprocessing:
the first ``num_frames`` (16) frames of each clip (StyleGAN-V reads 16 consecutive frames from the start) ->
float -> every frame resized as a whole to 112x112 (bilinear, corners aligned like Chainer's
``resize_images``; no crop) -> RGB to BGR -> ``u * 128 / 127.5`` (TGANv2 maps ``x`` in ``[-1, 1]`` to
``128 x + 128``) -> minus the mean clip. The score is :func:`~vidgen.metrics.inception.inception_score` of the
softmax of fc8.

Weight file (``weights``, default :data:`C3D_WEIGHTS`): a PyTorch state dict in this layout (``torch.save`` of
``{name: tensor}``; a ``{"state_dict": ...}`` wrapper, a ``module.`` prefix and the Chainer/Caffe names
``conv1a`` / ``conv2a`` are accepted). Without ``mean`` the per-channel C3D mean (BGR 90.25, 97.66, 101.41) is
used, with a warning: such a score is not comparable with published ones. StyleGAN-V's TorchScript file is not
read directly (TorchScript archives are refused; ``torch.jit`` is deprecated): copy its tensors into these names.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.inception import inception_score, resolve_device
from vidgen.metrics.weights import WeightFile

__all__ = ["C3D", "C3D_WEIGHTS", "VideoIS", "c3d_clips", "load_c3d", "video_is_protocol"]

#: conventional file name of the UCF101 C3D state dict
C3D_WEIGHTS = "c3d_ucf101_state_dict.pth"
C3D_DESCRIPTION = (
    "C3D fine-tuned on UCF101 (101 classes; the network of TGANv2 / StyleGAN-V video IS) as a PyTorch state dict "
    "with keys conv1 ... conv5b, fc6, fc7, fc8 and the BGR mean clip 'mean' (3, 16, 112, 112); convert it from "
    "StyleGAN-V's TorchScript c3d_ucf101.pt (https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt) or "
    "TGANv2's Chainer conv3d_deepnetA_ucf.npz + mean2.npz"
)
#: per-channel BGR mean of C3D (used only when the weight file has no mean clip)
C3D_CHANNEL_MEAN_BGR = (90.25164795, 97.65701294, 101.4083252)
C3D_FRAMES = 16
C3D_SIZE = 112
#: conv layers: (name, is followed by this pooling); widths come from the weights
_CONVS = ("conv1", "conv2", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
_POOL_AFTER = {
    "conv1": (1, 2, 2),
    "conv2": (2, 2, 2),
    "conv3b": (2, 2, 2),
    "conv4b": (2, 2, 2),
    "conv5b": (2, 2, 2),
}
_ALIASES = {"conv1a.": "conv1.", "conv2a.": "conv2."}


class C3D(nn.Module):
    """C3D (Tran et al. 2015) for ``(N, 3, 16, 112, 112)`` BGR mean-subtracted clips; returns fc8 logits.

    Args:
        widths: output channels of conv1, conv2, conv3a/b, conv4a/b, conv5a/b (C3D: 64, 128, 256, 512, 512).
        hidden: width of fc6 and fc7 (4096).
        num_classes: fc8 outputs (101 for UCF101).
    """

    def __init__(
        self,
        widths: Sequence[int] = (64, 128, 256, 512, 512),
        hidden: int = 4096,
        num_classes: int = 101,
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        channels = {
            "conv1": (3, c1),
            "conv2": (c1, c2),
            "conv3a": (c2, c3),
            "conv3b": (c3, c3),
            "conv4a": (c3, c4),
            "conv4b": (c4, c4),
            "conv5a": (c4, c5),
            "conv5b": (c5, c5),
        }
        for name in _CONVS:
            setattr(self, name, nn.Conv3d(*channels[name], kernel_size=3, padding=1))
        self.fc6 = nn.Linear(c5 * 4 * 4, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.fc8 = nn.Linear(hidden, num_classes)
        mean = torch.tensor(C3D_CHANNEL_MEAN_BGR).view(3, 1, 1, 1).expand(3, C3D_FRAMES, C3D_SIZE, C3D_SIZE)
        self.register_buffer("mean", mean.clone())

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> C3D:
        """Build a C3D whose sizes are read from ``state`` (which must then load strictly)."""
        try:
            widths = [
                state[f"{name}.weight"].shape[0] for name in ("conv1", "conv2", "conv3a", "conv4a", "conv5a")
            ]
            hidden = state["fc6.weight"].shape[0]
            num_classes = state["fc8.weight"].shape[0]
        except KeyError as error:
            raise ValueError(
                f"not a C3D state dict: no {error.args[0]!r} (has {sorted(state)[:12]} ...)"
            ) from None
        return cls(widths=widths, hidden=hidden, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, 16, 112, 112)`` preprocessed clips (see :func:`c3d_clips`) -> ``(N, num_classes)`` logits."""
        for name in _CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in _POOL_AFTER:
                x = F.max_pool3d(x, kernel_size=_POOL_AFTER[name], ceil_mode=True)
        x = F.relu(self.fc6(x.flatten(1)))
        x = F.relu(self.fc7(x))
        return self.fc8(x)


def c3d_clips(videos: torch.Tensor, mean: torch.Tensor, num_frames: int = C3D_FRAMES) -> torch.Tensor:
    """Videos -> C3D input (TGANv2 / StyleGAN-V preprocessing).

    Args:
        videos: ``(N, F, H, W, 3)`` uint8, ``F >= num_frames``.
        mean: BGR mean clip ``(3, num_frames, 112, 112)`` in ``[0, 255]`` units.
        num_frames: leading frames used (16).

    Returns:
        ``(N, 3, num_frames, 112, 112)`` float32 on ``mean``'s device: first ``num_frames`` frames, each resized
        to 112x112 (bilinear, ``align_corners=True``), BGR, scaled by ``128 / 127.5``, minus ``mean``.
    """
    check_uint8_videos(videos, "video_is", min_frames=num_frames)
    clips = videos[:, :num_frames].to(mean.device)
    n = clips.shape[0]
    frames = clips.flatten(0, 1).permute(0, 3, 1, 2).float()  # (N*T, 3, H, W) RGB in [0, 255]
    frames = F.interpolate(frames, size=(C3D_SIZE, C3D_SIZE), mode="bilinear", align_corners=True)
    frames = frames.flip(1) * (128.0 / 127.5)  # BGR, TGANv2's 128 * (x + 1) with x = u / 127.5 - 1
    clips = frames.view(n, num_frames, 3, C3D_SIZE, C3D_SIZE).permute(0, 2, 1, 3, 4)
    return clips - mean.to(clips.dtype)


def _normalise_state(state: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"metric 'video_is': '{path}' does not hold a state dict (name -> tensor)")
    clean = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for old, new in _ALIASES.items():
            if key.startswith(old):
                key = new + key[len(old) :]
        clean[key] = value
    return clean


def load_c3d(path: str | Path) -> C3D:
    """Read a C3D state dict (``weights_only=True``) into a :class:`C3D` of matching sizes, in eval mode.

    Raises ``ValueError`` for TorchScript archives, non-state-dict files and key / shape mismatches.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist()):
                raise ValueError(
                    f"metric 'video_is': '{path}' is a TorchScript archive; convert it to a state dict with keys "
                    "conv1 ... fc8 and 'mean' (see vidgen.metrics.c3d)"
                )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"metric 'video_is': cannot read '{path}' as a state dict ({C3D_DESCRIPTION}): {error}"
        ) from error
    state = _normalise_state(raw, path)
    model = C3D.from_state_dict(state)
    if "mean" not in state:
        warnings.warn(
            f"video_is: '{path}' has no 'mean' clip; using the per-channel C3D mean {C3D_CHANNEL_MEAN_BGR} (BGR). "
            "Scores are not comparable with TGANv2 / StyleGAN-V numbers.",
            UserWarning,
            stacklevel=2,
        )
        state["mean"] = model.mean.clone()
    elif state["mean"].shape == (3,):
        state["mean"] = state["mean"].view(3, 1, 1, 1).expand_as(model.mean).clone()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"metric 'video_is': '{path}' does not fit C3D: {error}") from error
    if model.fc6.in_features != model.conv5b.out_channels * 16:
        raise ValueError(f"metric 'video_is': fc6 of '{path}' does not take conv5b's 4x4 output")
    return model.eval().requires_grad_(False)


def video_is_protocol(num_fake: int, splits: int) -> str:
    """The published protocol a (sample count, splits) pair corresponds to."""
    if (num_fake, splits) == (2048, 1):
        return "StyleGAN-V/DIGAN protocol (Latte): 2048 videos, 1 split"
    if (num_fake, splits) == (10000, 10):
        return "TGAN/TGANv2 protocol: 10k videos, 10 splits"
    return f"custom protocol: {num_fake} videos, {splits} splits"


class VideoIS(VideoMetric):
    """UCF101 video Inception Score of generated clips (C3D fine-tuned on UCF101).

    Args (config keys):
        weights: C3D state dict (default :data:`C3D_WEIGHTS`, under ``$VIDGEN_WEIGHTS``).
        num_fake: generated clips (default 2048: StyleGAN-V/DIGAN protocol, as Latte; TGANv2 uses 10000).
        splits: consecutive splits (default 1; TGANv2 uses 10).
        num_frames: frames per clip fed to C3D (16; the network's mean clip and fc6 fix it).
        batch_size: clips per network call.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    Result: ``{"video_is": mean over splits, "video_is/std": std over splits}``; :meth:`describe` names the
    protocol.
    """

    name = "video_is"
    needs_real = False

    def __init__(
        self,
        weights: str | Path = C3D_WEIGHTS,
        num_fake: int = 2048,
        splits: int = 1,
        num_frames: int = C3D_FRAMES,
        batch_size: int = 16,
        device: str = "auto",
    ) -> None:
        for key, value in {"num_fake": num_fake, "splits": splits, "batch_size": batch_size}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"video_is: '{key}' must be a positive integer, got {value!r}")
        if num_frames != C3D_FRAMES:
            raise ValueError(
                f"video_is: 'num_frames' must be {C3D_FRAMES} (C3D's mean clip and fc6 are built for 16-frame "
                f"clips), got {num_frames!r}"
            )
        if splits > num_fake:
            raise ValueError(f"video_is: 'splits' ({splits}) cannot exceed 'num_fake' ({num_fake})")
        self.weights = Path(weights)
        self.num_fake = num_fake
        self.splits = splits
        self.num_frames = num_frames
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self._network: C3D | None = None
        self._logits: list[torch.Tensor] = []

    @property
    def protocol(self) -> str:
        return video_is_protocol(self.num_fake, self.splits)

    def describe(self) -> dict[str, str]:
        """What each result key means, with the protocol."""
        text = f"UCF101 C3D video IS, {self.num_frames} frames at 112x112, {self.protocol}"
        return {"video_is": f"{text} (mean)", "video_is/std": f"{text} (std over splits)"}

    def required_files(self) -> list[WeightFile]:
        return [WeightFile(path=self.weights, metric=self.name, description=C3D_DESCRIPTION)]

    def _net(self) -> C3D:
        if self._network is None:
            path = self.required_files()[0].check()
            self._network = load_c3d(path).to(self.device)
        return self._network

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        raise RuntimeError("video_is: scores generated videos only (needs_real is False)")

    @torch.no_grad()
    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        check_uint8_videos(videos, self.name, min_frames=self.num_frames)
        net = self._net()
        for batch in videos.split(self.batch_size):
            self._logits.append(net(c3d_clips(batch, net.mean, self.num_frames)).double().cpu())

    def probabilities(self) -> torch.Tensor:
        """``(M, num_classes)`` float64 softmax of fc8 for every generated clip seen so far, in order."""
        if not self._logits:
            raise RuntimeError("video_is: no generated videos seen")
        return torch.cat(self._logits).softmax(dim=1)

    def compute(self) -> dict[str, float]:
        probs = self.probabilities()
        if probs.shape[0] < self.splits:
            raise ValueError(f"video_is: {probs.shape[0]} clips cannot fill {self.splits} splits")
        mean, std = inception_score(probs, self.splits)
        return {"video_is": mean, "video_is/std": std}
