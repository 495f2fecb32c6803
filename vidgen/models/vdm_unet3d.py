"""VDM's 3D U-Net (Ho, Salimans et al. 2022, "Video Diffusion Models"; seed 004): a factorised space-time U-Net.

The standard image U-Net (ADM's layout: residual blocks, spatial attention at some resolutions, spatial
down- then up-sampling with concatenated skips) made into a video network by three changes (paper Sec. 3,
Fig. 1; ``vidgen/shared`` VDM spec Sec. 1.3):

1. every 3x3 convolution is a ``1 x 3 x 3`` 3D convolution (:mod:`vidgen.nn.resblock3d`), down- and
   up-sampling change ``H, W`` only: the frame count never changes;
2. spatial attention (:class:`~vidgen.nn.factorised_attention.SpatialAttention`) attends over the positions
   of each frame, frames as a batch axis;
3. after each spatial attention a temporal attention
   (:class:`~vidgen.nn.factorised_attention.TemporalSelfAttention`) attends over the frames at each
   position, with relative frame positions (:mod:`vidgen.nn.temporal_position`).

Nothing else mixes frames: every GroupNorm is frame-local (:class:`~vidgen.nn.frame_norm.FrameGroupNorm`), the
temporal attention's pre-norm is per token, and the conditioning embedding is per sample (or per frame).

Layout, ``K = len(channel_mult)`` levels, level ``k`` at ``input_size / 2^k`` with ``base_channels *
channel_mult[k]`` channels: ``conv_in`` (1x3x3); down levels of ``num_res_blocks`` ResBlocks, a spatial
downsample between levels; middle ResBlock, spatial, temporal, ResBlock; up levels of ``num_res_blocks + 1``
ResBlocks each taking a concatenated skip, a spatial upsample between levels; output frame-local GN, SiLU,
``1x3x3`` conv to ``C_out`` (zero-initialised). A ResBlock at a feature-map side length in
``attention_resolutions`` is followed by a spatial attention, and by a temporal attention when the length
is in ``temporal_attention_resolutions`` (default: the same list, the literal reading of "after each spatial
attention block"; the middle always has both). Resolutions are feature-map side lengths (the paper's
"8, 16, 32" at 64x64 input: every level but the first); the layer list is fixed at construction from
``input_size``, and a forward pass takes any ``H, W`` divisible by ``2^(K-1)``.

Conditioning (added into every ResBlock as ``Linear(E -> cout)(SiLU(e))``): ``e = MLP_L(Fourier(t))``
(:class:`~vidgen.nn.condition_embedding.FourierMLP`; ``t`` is whatever the diffusion feeds: the integer
step of a discrete schedule or the log-SNR of ``diffusion=vdm``) plus the condition ``c``: a class table
with ``num_classes + 1`` rows whose null row (index ``num_classes``) is the zero vector and gets no gradient
(``padding_idx``; the paper's "c = 0" for classifier-free guidance), or the text states ``cond.text`` pooled
by attention (:class:`~vidgen.nn.condition_embedding.AttentionPool`, masked by ``cond.text_mask``) into one
vector of width ``E`` (the null condition is the text conditioner's empty caption, as for every model).
``cond.pooled_text`` is not used.

Image-video joint training (``cond.num_video_frames = F`` with ``x`` of ``F + K`` frames; paper Sec. 3 and
4.3.1): every temporal attention is masked with ``allowed[i, j] = (i < F and j < F) or i == j``
(:func:`~vidgen.nn.temporal_position.joint_training_mask`), so an appended image attends only to itself
(identity attention, exactly the one-frame computation) and the clip only to the clip. Each image is
conditioned on its own label / caption (``cond.images`` through :meth:`Cond.per_frame`, never the clip's):
the embedding is then per frame, ``e: (B, F + K, E)``, broadcast over ``H, W``. ``num_video_frames = 0``:
every frame is an independent image. The loss covers every frame (the diffusion's business).

Switches (constructor arguments = config keys, ``conf/model/vdm_unet3d.yaml``): ``temporal_pos`` ``shaw``
(default; ``relative_max_distance`` R = 32), ``t5_bias`` (``t5_num_buckets`` 32, ``relative_max_distance``
32), ``rope``, ``none``; ``temporal_attention_resolutions``; ``dropout``; ``learn_sigma`` (``2C`` outputs, the
variance interpolation of vidgen's hybrid-loss diffusions; VDM itself uses a fixed variance);
``gradient_checkpointing`` (every U-Net block). The size's values (``base_channels``, ``channel_mult``,
``num_res_blocks``, ``attention_resolutions``, ``head_dim``, ``emb_dim``, ``emb_mlp_layers``, ``dropout``,
``norm_groups``, ``frequency_dim``) are overridden by the keys of the same names when not null.

Sizes (:data:`VDM_SIZES`, paper App. A; heads = channels / ``head_dim``; ``frequency_dim`` = base channels,
ADM's):

==========  ====  ===========  ==  ========  ===  ========  =======  ======  ===========================
size        base  mult         N   attn      d    E / L     dropout  groups  parameters (C = 3, no cond.)
==========  ====  ===========  ==  ========  ===  ========  =======  ======  ===========================
tiny        32    1, 2         1   8         16   128 / 2   0.0      8       777,891 at 16x16
ucf101      256   1, 2, 4, 8   2   32,16,8   64   1024 / 4  0.1      32      1,143,935,491 at 64x64
bair        128   1, 2, 3, 4   3   32,16,8   64   1024 / 2  0.1      32      138,336,131 at 64x64
kinetics    256   1, 2, 4, 8   2   32,16,8   64   1024 / 2  0.1      32      1,141,836,291 at 64x64
t2v_small   128   1, 2, 4, 8   2   32,16,8   64   1024 / 4  0.0      32      294,589,699 at 64x64
t2v_large   256   1, 2, 4, 8   2   32,16,8   64   1024 / 4  0.0      32      1,143,935,491 at 64x64
t2v_9x128   128   1,2,4,8,16   2   32,16,8   128  1024 / 4  0.0      32      1,146,918,147 at 128x128
==========  ====  ===========  ==  ========  ===  ========  =======  ======  ===========================

What a count includes: every trainable parameter (``C`` = input channels, ``C_out`` = outputs, ``W`` = a
layer's width, ``E`` / ``L`` / ``f`` = embedding width / MLP layers / sinusoidal features), Shaw's tables
included. Sum of: ``conv_in`` ``9 C base + base``; the embedding MLP ``f E + E + (L - 1)(E^2 + E)``; each
ResBlock ``cin -> cout`` ``2 cin + 9 cin cout + cout + E cout + cout + 2 cout + 9 cout^2 + cout`` (``+ cin cout
+ cout`` when ``cin != cout``); each resampler ``9 W^2 + W``; each spatial attention ``4 W^2 + 6 W``; each
temporal attention ``4 W^2 + 6 W`` plus its position's (Shaw ``2 (2R + 1) head_dim``, T5 ``t5_num_buckets *
heads``, RoPE / none 0); the output ``2 base + 9 base C_out + C_out``. Text (``text_dim = D``) adds the
attention pool ``3 D^2 + 4 D + D E + E``; classes ``(num_classes + 1) E``; ``learn_sigma`` ``9 base C + C``.
Initialisation: PyTorch's defaults (Shaw / T5 tables N(0, 0.02)), except zeros for the output conv, every attention's output projection
and every ResBlock's second conv (ADM: each block starts as its skip, the model outputs zero). The counts
are pinned (and checked against this closed form) in ``tests/models/test_vdm_unet3d_config.py``; next to
the spec's estimates in ``experiments/vdm/README.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.checks import checked_choice, checked_int, checked_square_side
from vidgen.nn.condition_embedding import AttentionPool, FourierMLP
from vidgen.nn.factorised_attention import SpatialAttention, TemporalSelfAttention
from vidgen.nn.frame_norm import FrameGroupNorm
from vidgen.nn.resblock3d import ResBlock3D, SpatialDownsample, SpatialUpsample, spatial_conv
from vidgen.nn.temporal_position import TEMPORAL_POSITIONS, build_temporal_position, joint_training_mask

__all__ = ["VDM_SIZES", "SpaceTimeBlock", "VDMSize", "VDMUNet3D"]


class VDMSize(NamedTuple):
    """One row of :data:`VDM_SIZES` (paper App. A)."""

    base_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_resolutions: tuple[int, ...]
    head_dim: int
    emb_dim: int
    emb_mlp_layers: int
    dropout: float
    norm_groups: int = 32


#: Model sizes: ``tiny`` for CPU work on 16x16 clips, the paper's configurations (App. A, spec Sec. 1.2).
VDM_SIZES: dict[str, VDMSize] = {
    "tiny": VDMSize(32, (1, 2), 1, (8,), 16, 128, 2, 0.0, norm_groups=8),
    "ucf101": VDMSize(256, (1, 2, 4, 8), 2, (32, 16, 8), 64, 1024, 4, 0.1),
    "bair": VDMSize(128, (1, 2, 3, 4), 3, (32, 16, 8), 64, 1024, 2, 0.1),
    "kinetics": VDMSize(256, (1, 2, 4, 8), 2, (32, 16, 8), 64, 1024, 2, 0.1),
    "t2v_small": VDMSize(128, (1, 2, 4, 8), 2, (32, 16, 8), 64, 1024, 4, 0.0),
    "t2v_large": VDMSize(256, (1, 2, 4, 8), 2, (32, 16, 8), 64, 1024, 4, 0.0),
    "t2v_9x128": VDMSize(128, (1, 2, 4, 8, 16), 2, (32, 16, 8), 128, 1024, 4, 0.0),
}


def _checked_ints(key: str, value: Any, minimum: int, allow_empty: bool = False) -> tuple[int, ...]:
    """A list of integers ``>= minimum`` as a tuple, or a :class:`ConfigError` naming ``key``."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(key, f"must be a list of integers, got {value!r}")
    if not value and not allow_empty:
        raise ConfigError(key, "must not be empty")
    return tuple(checked_int(key, v, minimum) for v in value)


def _checked_dropout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value < 1.0:
        raise ConfigError("model.dropout", f"must be a number in [0, 1), got {value!r}")
    return float(value)


class SpaceTimeBlock(nn.Module):
    """One unit of the U-Net, ADM's ``TimestepEmbedSequential``: ``[ResBlock] [spatial attention] [temporal
    attention] [resampler]``, each present or not. Every unit's output is one skip of the down path."""

    def __init__(
        self,
        res: ResBlock3D | None = None,
        spatial: SpatialAttention | None = None,
        temporal: TemporalSelfAttention | None = None,
        resample: SpatialDownsample | SpatialUpsample | None = None,
    ) -> None:
        super().__init__()
        self.res = res
        self.spatial = spatial
        self.temporal = temporal
        self.resample = resample

    def forward(self, x: torch.Tensor, emb: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
        """``x: (B, C, F, H, W)``, ``emb: (B, 1 | F, E)``, ``allowed: (F, F)`` bool or None -> the new ``x``."""
        if self.res is not None:
            x = self.res(x, emb)
        if self.spatial is not None:
            x = self.spatial(x)
        if self.temporal is not None:
            x = self.temporal(x, allowed)
        if self.resample is not None:
            x = self.resample(x)
        return x


class VDMUNet3D(nn.Module):
    """VDM's 3D U-Net denoiser. ``forward(x, t, cond) -> out`` on videos ``(B, C, F, H, W)``.

    Constructor arguments are the config keys under ``model`` (the module docstring says what each does and
    what it costs in parameters).

    Args:
        size: one of :data:`VDM_SIZES`.
        base_channels, channel_mult, num_res_blocks, attention_resolutions, head_dim, emb_dim,
            emb_mlp_layers, dropout, norm_groups: override the size's value when not None.
        temporal_attention_resolutions: side lengths with a temporal attention after the spatial one;
            None = ``attention_resolutions``.
        frequency_dim: sinusoidal features of ``t``; None = ``base_channels`` (ADM).
        temporal_pos: ``shaw`` | ``t5_bias`` | ``rope`` | ``none``.
        relative_max_distance: Shaw's clipping distance R; T5's ``max_distance``.
        t5_num_buckets: T5's buckets (even, >= 4).
        in_channels: ``C`` (3 in pixel space, the autoencoder's latent channels otherwise).
        input_size: the input side length the attention levels are laid out for.
        num_frames: the training clip length (reference only: nothing depends on it; any ``F`` runs).
        learn_sigma: output ``2C`` channels (eps and the variance interpolation).
        num_classes: 0 = no classes; ``> 0``: a label table of ``num_classes + 1`` rows, the last (null)
            zero.
        text_dim: width of ``cond.text``; 0 = no text; ``> 0``: attention-pooled text.
        text_pool_heads: heads of the text attention pool (``text_dim`` divisible by it).
        gradient_checkpointing: recompute each U-Net block's activations in the backward pass.
    """

    def __init__(
        self,
        size: str = "ucf101",
        base_channels: int | None = None,
        channel_mult: Sequence[int] | None = None,
        num_res_blocks: int | None = None,
        attention_resolutions: Sequence[int] | None = None,
        temporal_attention_resolutions: Sequence[int] | None = None,
        head_dim: int | None = None,
        emb_dim: int | None = None,
        emb_mlp_layers: int | None = None,
        frequency_dim: int | None = None,
        dropout: float | None = None,
        norm_groups: int | None = None,
        temporal_pos: str = "shaw",
        relative_max_distance: int = 32,
        t5_num_buckets: int = 32,
        in_channels: int = 3,
        input_size: int = 64,
        num_frames: int = 16,
        learn_sigma: bool = False,
        num_classes: int = 0,
        text_dim: int = 0,
        text_pool_heads: int = 8,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if size not in VDM_SIZES:
            raise ConfigError("model.size", f"unknown size {size!r}; choose one of {', '.join(VDM_SIZES)}")
        base = VDM_SIZES[size]

        def pick(name: str, value: Any) -> Any:
            return getattr(base, name) if value is None else value

        self.size = size
        self.base_channels = checked_int("model.base_channels", pick("base_channels", base_channels), 1)
        self.channel_mult = _checked_ints("model.channel_mult", pick("channel_mult", channel_mult), 1)
        self.num_res_blocks = checked_int("model.num_res_blocks", pick("num_res_blocks", num_res_blocks), 1)
        self.attention_resolutions = _checked_ints(
            "model.attention_resolutions", pick("attention_resolutions", attention_resolutions), 1, True
        )
        self.temporal_attention_resolutions = (
            self.attention_resolutions
            if temporal_attention_resolutions is None
            else _checked_ints(
                "model.temporal_attention_resolutions", temporal_attention_resolutions, 1, True
            )
        )
        self.head_dim = checked_int("model.head_dim", pick("head_dim", head_dim), 1)
        self.emb_dim = checked_int("model.emb_dim", pick("emb_dim", emb_dim), 1)
        self.emb_mlp_layers = checked_int("model.emb_mlp_layers", pick("emb_mlp_layers", emb_mlp_layers), 1)
        self.frequency_dim = checked_int(
            "model.frequency_dim", self.base_channels if frequency_dim is None else frequency_dim, 2
        )
        self.dropout = _checked_dropout(pick("dropout", dropout))
        self.norm_groups = checked_int("model.norm_groups", pick("norm_groups", norm_groups), 1)
        self.temporal_pos = checked_choice("model.temporal_pos", temporal_pos, TEMPORAL_POSITIONS)
        self.relative_max_distance = checked_int("model.relative_max_distance", relative_max_distance, 1)
        self.t5_num_buckets = checked_int("model.t5_num_buckets", t5_num_buckets, 4)
        self.in_channels = checked_int("model.in_channels", in_channels, 1)
        self.input_size = checked_square_side(
            "model.input_size", input_size, "vdm_unet3d (attention levels are set by one side length)"
        )
        self.num_frames = checked_int("model.num_frames", num_frames, 1)
        self.learn_sigma = bool(learn_sigma)
        self.out_channels = 2 * self.in_channels if self.learn_sigma else self.in_channels
        self.num_classes = checked_int("model.num_classes", num_classes, 0)
        self.text_dim = checked_int("model.text_dim", text_dim, 0)
        self.text_pool_heads = checked_int("model.text_pool_heads", text_pool_heads, 1)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self._check_architecture()

        self.time_embed = FourierMLP(self.frequency_dim, self.emb_dim, self.emb_mlp_layers)
        self.label_embed = (
            nn.Embedding(self.num_classes + 1, self.emb_dim, padding_idx=self.num_classes)
            if self.num_classes
            else None
        )
        self.text_pool = (
            AttentionPool(self.text_dim, self.emb_dim, self.text_pool_heads) if self.text_dim else None
        )
        self.conv_in = spatial_conv(self.in_channels, self.base_channels)
        self.down_blocks, self.mid_block, self.up_blocks = self._build_unet()
        self.out_norm = FrameGroupNorm(self.norm_groups, self.base_channels)
        self.out_conv = spatial_conv(self.base_channels, self.out_channels)
        nn.init.zeros_(self.out_conv.weight)
        nn.init.zeros_(self.out_conv.bias)

    # ----------------------------------------------------------------------------------------- setup
    def _check_architecture(self) -> None:
        """Values that are fine alone but not together, each named by the key to change."""
        levels = len(self.channel_mult)
        if self.input_size % 2 ** (levels - 1):
            raise ConfigError(
                "model.input_size",
                f"{self.input_size} is not divisible by 2^{levels - 1} = {2 ** (levels - 1)} "
                f"({levels} levels of model.channel_mult halve it {levels - 1} times)",
            )
        for mult in self.channel_mult:
            width = self.base_channels * mult
            if width % self.norm_groups:
                raise ConfigError(
                    "model.norm_groups", f"{self.norm_groups} groups do not divide a level's {width} channels"
                )
        for level, mult in enumerate(self.channel_mult):
            width, side = self.base_channels * mult, self.input_size >> level
            attends = side in self.attention_resolutions or side in self.temporal_attention_resolutions
            if (attends or level == levels - 1) and width % self.head_dim:
                raise ConfigError(
                    "model.head_dim",
                    f"{width} channels at side {side} are not divisible by head_dim {self.head_dim}",
                )
        if self.temporal_pos == "rope" and self.head_dim % 2:
            raise ConfigError(
                "model.head_dim", f"temporal_pos=rope needs an even head_dim, got {self.head_dim}"
            )
        if self.temporal_pos == "t5_bias":
            if self.t5_num_buckets % 2:
                raise ConfigError("model.t5_num_buckets", f"must be even, got {self.t5_num_buckets}")
            if self.relative_max_distance <= self.t5_num_buckets // 4:
                raise ConfigError(
                    "model.relative_max_distance",
                    f"T5 buckets need max_distance > num_buckets / 4 = {self.t5_num_buckets // 4}, "
                    f"got {self.relative_max_distance}",
                )
        if self.text_dim and self.text_dim % self.text_pool_heads:
            raise ConfigError(
                "model.text_pool_heads",
                f"text width {self.text_dim} (model.text_dim) is not divisible by {self.text_pool_heads} heads",
            )

    def _block(
        self, res: ResBlock3D, side: int, width: int, resample: SpatialUpsample | None = None
    ) -> SpaceTimeBlock:
        """A ResBlock followed by the attentions its feature-map side length calls for (and ``resample``)."""
        heads = width // self.head_dim
        spatial = (
            SpatialAttention(width, heads, self.norm_groups) if side in self.attention_resolutions else None
        )
        temporal = self._temporal(width) if side in self.temporal_attention_resolutions else None
        return SpaceTimeBlock(res, spatial, temporal, resample)

    def _temporal(self, width: int) -> TemporalSelfAttention:
        heads = width // self.head_dim
        position = build_temporal_position(
            self.temporal_pos, self.head_dim, heads, self.relative_max_distance, self.t5_num_buckets
        )
        return TemporalSelfAttention(width, heads, position)

    def _res(self, cin: int, cout: int) -> ResBlock3D:
        return ResBlock3D(cin, cout, self.emb_dim, self.norm_groups, self.dropout)

    def _build_unet(self) -> tuple[nn.ModuleList, nn.ModuleList, nn.ModuleList]:
        """ADM's layout (see the module docstring): the down, middle and up units."""
        levels = len(self.channel_mult)
        width, side = self.base_channels, self.input_size
        skips = [width]  # channels of every skip the down path leaves, conv_in's first
        down = []
        for level, mult in enumerate(self.channel_mult):
            for _ in range(self.num_res_blocks):
                down.append(
                    self._block(self._res(width, self.base_channels * mult), side, self.base_channels * mult)
                )
                width = self.base_channels * mult
                skips.append(width)
            if level < levels - 1:
                down.append(SpaceTimeBlock(resample=SpatialDownsample(width)))
                skips.append(width)
                side //= 2
        heads = width // self.head_dim
        mid = [
            SpaceTimeBlock(
                self._res(width, width),
                SpatialAttention(width, heads, self.norm_groups),
                self._temporal(width),
            ),
            SpaceTimeBlock(self._res(width, width)),
        ]
        up = []
        for level in reversed(range(levels)):
            out = self.base_channels * self.channel_mult[level]
            for i in range(self.num_res_blocks + 1):
                upsample = SpatialUpsample(out) if level > 0 and i == self.num_res_blocks else None
                up.append(self._block(self._res(width + skips.pop(), out), side, out, upsample))
                width = out
            side *= 2
        return nn.ModuleList(down), nn.ModuleList(mid), nn.ModuleList(up)

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def temporal_layers(self) -> list[TemporalSelfAttention]:
        """Every temporal attention of the U-Net, in forward order (down, middle, up)."""
        return [m for m in self.modules() if isinstance(m, TemporalSelfAttention)]

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Predict the denoiser output of every frame.

        Args:
            x: ``(B, C, F, H, W)`` noisy video (pixels or latents); ``H, W`` divisible by ``2^(K-1)``; any
                ``F >= 1``.
            t: ``(B,)`` the integer step or the log-SNR (float), or a 0-d tensor broadcast to the batch.
            cond: ``labels (B,)`` when ``num_classes > 0`` (null = ``num_classes``); ``text (B, L,
                text_dim)`` [+ ``text_mask (B, L)``] when ``text_dim > 0``; ``num_video_frames`` for
                image-video joint training, with ``images`` (each appended image's own labels / text) for
                a conditional model.

        Returns:
            ``(B, C_out, F, H, W)``, ``C_out = 2C`` with ``learn_sigma`` else ``C``.
        """
        self._check_input(x)
        batch, frames = x.shape[0], x.shape[2]
        clip = self._clip_frames(cond, frames)
        allowed = None if clip is None else joint_training_mask(frames, clip, x.device)
        emb = self._embedding(t, cond, batch, frames).to(x.dtype)  # (B, 1 | F, E)

        h = self.conv_in(x)
        skips = [h]
        for block in self.down_blocks:
            h = self._run(block, h, emb, allowed)
            skips.append(h)
        for block in self.mid_block:
            h = self._run(block, h, emb, allowed)
        for block in self.up_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), emb, allowed)
        return self.out_conv(F.silu(self.out_norm(h)))

    def _run(
        self, block: SpaceTimeBlock, h: torch.Tensor, emb: torch.Tensor, allowed: torch.Tensor | None
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, emb, allowed, use_reentrant=False)
        return block(h, emb, allowed)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"VDMUNet3D expects x of shape (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}"
            )
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.shape[3] % factor or x.shape[4] % factor:
            raise ValueError(
                f"frame size {tuple(x.shape[3:])} is not divisible by 2^{len(self.channel_mult) - 1} = {factor} "
                f"(the U-Net halves it at each of its {len(self.channel_mult)} levels)"
            )

    @staticmethod
    def _clip_frames(cond: Cond | None, total: int) -> int | None:
        """Frames of the video clip under image-video joint training; None when every frame is the clip."""
        value = cond.num_video_frames if cond is not None else None
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= total:
            raise ValueError(f"cond.num_video_frames must be an integer in [0, {total}], got {value!r}")
        return None if value == total else value

    def _embedding(self, t: torch.Tensor, cond: Cond | None, batch: int, frames: int) -> torch.Tensor:
        """``e = MLP(Fourier(t)) [+ c]``: ``(B, 1, E)``, or ``(B, F, E)`` when the frames have their own
        conditions (image-video joint training with a conditional model)."""
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        emb = self.time_embed(t)[:, None]  # (B, 1, E)
        self._check_cond(cond, batch)
        if self.label_embed is None and self.text_pool is None:
            return emb
        if cond.has_own_frame_conditions(frames):
            per_frame = cond.per_frame(frames)  # batch B * F, sample-major
            return emb + self._condition_vector(per_frame).view(batch, frames, -1)
        return emb + self._condition_vector(cond)[:, None]

    def _condition_vector(self, cond: Cond) -> torch.Tensor:
        """``c: (N, E)``, the label's row and / or the pooled text of each of the ``N`` rows of ``cond``."""
        parts = []
        if self.label_embed is not None:
            parts.append(self.label_embed(cond.labels))
        if self.text_pool is not None:
            parts.append(self.text_pool(cond.text.to(self.text_pool.proj.weight.dtype), cond.text_mask))
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]

    def _check_cond(self, cond: Cond | None, batch: int) -> None:
        """The condition this model needs, and nothing it cannot read."""
        labels = cond.labels if cond is not None else None
        if self.num_classes and labels is None:
            raise ValueError(
                f"this VDMUNet3D is class-conditional (model.num_classes={self.num_classes}) but no labels were "
                f"given; pass cond=Cond(labels=...), using {self.num_classes} for the null class"
            )
        if not self.num_classes and labels is not None:
            raise ValueError(
                "this VDMUNet3D has no class conditioning (model.num_classes=0) but was given labels; "
                "set model.num_classes (conditioner=class) to train a class-conditional model"
            )
        if labels is not None and labels.shape != (batch,):
            raise ValueError(f"cond.labels must have shape ({batch},), got {tuple(labels.shape)}")
        text = cond.text if cond is not None else None
        if self.text_dim and text is None:
            raise ValueError(
                f"this VDMUNet3D is text-conditional (model.text_dim={self.text_dim}) but cond.text is missing; "
                f"pass cond=Cond(text=(B, L, {self.text_dim})[, text_mask=(B, L)]), the empty caption's states "
                f"for the null condition"
            )
        if not self.text_dim and text is not None:
            raise ValueError(
                "this VDMUNet3D has no text conditioning (model.text_dim=0) but was given text; "
                "set model.text_dim (conditioner=text) to train a text-to-video model"
            )
        if text is not None:
            cond.checked_text(batch, self.text_dim, "model.text_dim")  # the shapes; the pool reads cond
