"""Latent-Shift and its baselines: a text-to-image diffusers U-Net run on the frames of a latent video.

One class, :class:`LatentUNet`, three ``temporal`` modes (config files ``conf/model/latent_*.yaml``):

==========  =============  ============================================================================
temporal    config         what connects the frames
==========  =============  ============================================================================
shift       latent_shift   Latent-Shift (seeds 000, 001): a parameter-free temporal shift of the residual
                           branch of every ResNet block (:mod:`vidgen.nn.temporal_shift`), ``fold =
                           int(C * shift.fraction)`` channels from the previous and as many from the next
                           frame, zero padded at the clip's ends
attention   latent_vdm     Latent-VDM, the paper's baseline: a temporal self-attention layer (pre-norm,
                           RoPE over frames, zero-initialised output; :mod:`vidgen.nn.temporal_attention`)
                           after every spatial transformer of the U-Net (down, mid and up blocks)
none        latent_2d      nothing: every frame is denoised on its own by the image model (the ablation
                           "without the temporal shift" of the paper's Fig. 6/7)
==========  =============  ============================================================================

The U-Net is diffusers' ``UNet2DConditionModel``, kept as it is in the attribute ``unet``: the video
model's state-dict keys are ``unet.<Stable Diffusion U-Net keys>`` (plus ``temporal_layers.*`` for
``attention``), so Stable Diffusion weights load untouched and a trained model's ``unet.*`` weights load
back into a plain ``UNet2DConditionModel`` with ``strict=True``. The temporal parts are hooks: the shift is
a ``forward_pre_hook`` on ``conv1`` of every ``ResnetBlock2D``, the temporal attention a ``forward_hook`` on
every ``Transformer2DModel`` whose layer lives in ``self.temporal_layers``. Hooks read the frame layout
from :attr:`LatentUNet.frame_context`, set around every U-Net call. They are callable objects holding that
context, so ``copy.deepcopy`` (the EMA twin) gives a model whose hooks shift its own U-Net with its own
context. A hooked U-Net called directly (outside :meth:`LatentUNet.forward`) treats each batch row as a
one-frame video: the text-to-image use of Latent-Shift (both shifted parts zero).

Forward: ``x (B, C, F, H, W)`` -> frames in the batch ``(B*F, C, H, W)`` (clip-major, ``repeat_interleave``
of the timesteps and text states per frame), the U-Net, and back to ``(B, C_out, F, H, W)``.

Text: ``cond.text (B, L, cross_attention_dim)`` feeds the U-Net's cross-attention. Without text (``cond``
None or ``cond.text`` None, e.g. ``conditioner=none``) the U-Net reads a single all-zero token of width
``cross_attention_dim``: an unconditional model (the cross-attention then adds a constant, the output
projection's bias). ``cond.text_mask`` is passed as diffusers' ``encoder_attention_mask`` only with
``use_text_mask=true``: Stable Diffusion 1.x was trained attending to all 77 CLIP states (padding
included), so the default ignores the mask. Class labels are not supported (raises).

Image-video joint training (``cond.num_video_frames = F`` with ``x`` of ``F + K`` frames): the shift and
the temporal attention connect the first ``F`` frames only; each of the ``K`` appended images is a
one-frame video (zeros in both shifted parts; temporal attention over itself alone), which is what the
model does for ``F = 1`` (text-to-image), and its cross-attention reads its own caption (``cond.images``,
:meth:`~vidgen.conditioning.Cond.per_frame`), never the clip's. ``num_video_frames = 0``: every frame is an
independent image.

Sizes (``size``): ``sd`` = Stable Diffusion 1.x's U-Net (blocks 320/640/1280/1280, 2 layers per block,
8 heads, 32 norm groups, cross-attention width 768); ``tiny`` = a two-level U-Net for CPU work (blocks
32/64, 1 layer per block, CrossAttnDown + Down / Up + CrossAttnUp, 8 norm groups, 8 heads, cross-attention
width 32). With ``pretrained_path`` the folder's ``config.json`` defines the architecture and ``size`` is
not used.

Parameters: ``latent_shift`` and ``latent_2d`` have exactly the plain U-Net's parameters (the paper's
point: the shift adds none; 22 hooked ResNet blocks in ``sd``, 8 in ``tiny``); ``latent_vdm`` adds
``4C^2 + 6C`` per spatial transformer of width ``C`` (:mod:`vidgen.nn.temporal_attention`);
``learn_sigma`` adds the output conv's extra channels. The counts at each size, next to the paper's 1.53B /
1.58B: ``experiments/latent_shift/README.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.checks import checked_frame_size, checked_int
from vidgen.nn.frame_hooks import FrameCheckpoint, FrameContext, HookHandles, batch_to_frames, frames_to_batch
from vidgen.nn.temporal_attention import attach_temporal_attention, build_temporal_layers
from vidgen.nn.temporal_shift import attach_temporal_shift

__all__ = [
    "DEFAULT_CROSS_ATTENTION_DIM",
    "LATENT_UNET_SIZES",
    "TEMPORAL_MODES",
    "LatentUNet",
    "unet_config",
]

TEMPORAL_MODES = ("shift", "attention", "none")
LATENT_UNET_SIZES = ("tiny", "sd")
#: cross-attention width used when ``cross_attention_dim`` is 0 (no text conditioner): CLIP ViT-L/14's
#: width for Stable Diffusion 1.x, a small one for the tiny U-Net
DEFAULT_CROSS_ATTENTION_DIM = {"tiny": 32, "sd": 768}
#: Seed 000: three equal channel parts, 1/3 shifted each way (TSM: 1/8)
DEFAULT_SHIFT_FRACTION = 1.0 / 3.0


def unet_config(
    size: str,
    in_channels: int,
    out_channels: int,
    sample_size: int | tuple[int, int],
    cross_attention_dim: int,
    head_width: int | None = None,
) -> dict[str, Any]:
    """``UNet2DConditionModel`` keyword arguments of a size (``tiny`` or ``sd``, see the module docstring).

    ``sd`` reproduces Stable Diffusion 1.x's ``unet/config.json`` (with the given channels and widths), so
    its state-dict keys and shapes are those of an SD 1.x checkpoint. ``head_width``: attention heads of
    that many channels in every block (``channels / head_width`` heads) instead of the size's 8 heads per
    block; the parameters are the same (heads split the projections, they add none).
    """
    check_size(size)
    common = {
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": out_channels,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
    }
    if head_width is not None:
        common["attention_head_dim"] = _heads_per_block(unet_block_channels(size), head_width)
    if size == "sd":
        return {
            **common,
            "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            "block_out_channels": unet_block_channels(size),
            "layers_per_block": 2,
            "norm_num_groups": 32,
        }
    return {  # tiny
        **common,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "block_out_channels": unet_block_channels(size),
        "layers_per_block": 1,
        "norm_num_groups": 8,
    }


def unet_block_channels(size: str) -> tuple[int, ...]:
    """The output channels of each U-Net level of a size (``sd`` 320/640/1280/1280, ``tiny`` 32/64)."""
    return (320, 640, 1280, 1280) if size == "sd" else (32, 64)


def _heads_per_block(channels: Sequence[int], head_width: int) -> tuple[int, ...]:
    """Attention heads per U-Net level for heads ``head_width`` wide (diffusers' legacy
    ``attention_head_dim`` is the number of heads); every level's channels must be a multiple."""
    bad = [c for c in channels if c % head_width]
    if bad:
        raise ConfigError(
            "model.head_width",
            f"{head_width} does not divide the U-Net's block channels {tuple(channels)} (e.g. {bad[0]})",
        )
    return tuple(c // head_width for c in channels)


def check_size(size: str) -> None:
    """Raise a :class:`ConfigError` on ``model.size`` unless ``size`` is one of :data:`LATENT_UNET_SIZES`.

    The message names both sizes and what each is, so a size meant for another model (e.g. Latte's ``XL``
    given on the command line) points at the fix."""
    if size in LATENT_UNET_SIZES:
        return
    raise ConfigError(
        "model.size",
        f"unknown size {size!r} for the U-Net; choose one of {', '.join(LATENT_UNET_SIZES)} "
        "(model.size=sd: Stable Diffusion 1.x's U-Net, model.size=tiny: the two-level CPU U-Net)",
    )


def _shift_fraction(shift: Mapping[str, Any] | None) -> float:
    """``model.shift`` -> the fraction per direction (default 1/3), checked."""
    if shift is None:
        return DEFAULT_SHIFT_FRACTION
    if not isinstance(shift, Mapping):
        raise ConfigError("model.shift", f"must be a mapping like {{fraction: 0.125}}, got {shift!r}")
    unknown = sorted(str(k) for k in shift if k != "fraction")
    if unknown:
        raise ConfigError(f"model.shift.{unknown[0]}", "unknown key; allowed: fraction")
    fraction = shift.get("fraction", DEFAULT_SHIFT_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 0.5:
        raise ConfigError(
            "model.shift.fraction",
            f"must be a number in (0, 0.5] (channels shifted per direction; 1/3 seed 000, 1/8 TSM), got {fraction!r}",
        )
    return float(fraction)


class LatentUNet(nn.Module):
    """A text-to-image diffusers U-Net as a video denoiser. ``forward(x, t, cond) -> out`` on ``(B, C, F, H, W)``.

    Constructor arguments are the config keys under ``model`` (``conf/model/latent_{shift,vdm,2d}.yaml``).

    Args:
        temporal: ``shift`` (Latent-Shift), ``attention`` (Latent-VDM) or ``none`` (per-frame image model).
        size: ``tiny`` or ``sd`` (see :func:`unet_config`); not used with ``pretrained_path``.
        in_channels: latent channels ``C``.
        input_size: latent side or ``[H, W]`` (diffusers' ``sample_size``; the U-Net runs other sizes too).
        num_frames: the configured clip length ``F``. The model has no per-frame table and runs any ``F``;
            kept for reference and for :attr:`num_frames`.
        learn_sigma: output ``2C`` channels (eps and the variance interpolation) instead of ``C``. Not
            possible with ``pretrained_path`` (Stable Diffusion's U-Net outputs ``C``): raises
            ``ConfigError('diffusion.learn_sigma')``.
        cross_attention_dim: width of the text states ``cond.text``; 0 = the size's default
            (:data:`DEFAULT_CROSS_ATTENTION_DIM`: tiny 32, sd 768) or, with ``pretrained_path``, the loaded
            U-Net's.
        shift: ``{fraction: f}``: channels shifted per direction ``int(C * f)``, ``0 < f <= 1/2``
            (default 1/3, seed 000; TSM 1/8). Read with ``temporal=shift`` only.
        use_text_mask: pass ``cond.text_mask`` to the U-Net's cross-attention (default false, as Stable
            Diffusion, which attends to every CLIP state).
        pretrained_path: local text-to-image U-Net weights, loaded with
            :func:`vidgen.models.stable_diffusion.load_unet` (a Stable Diffusion 1.x folder, a diffusers U-Net
            folder, ...: see that module). None = random initialisation.
        pretrained_subfolder: the U-Net's subfolder inside a pipeline folder (``unet``).
        gradient_checkpointing: diffusers' activation checkpointing of the U-Net's blocks (the frame
            layout is kept for the recomputation) and of the temporal attention layers.
        head_width: channels per attention head in every spatial transformer (and Latent-VDM's temporal
            layers, which take the transformer's heads); None = the size's 8 heads per block (``tiny``:
            heads 4 and 8 wide, on a CPU 2.2x slower a training step than heads 32 wide: the flash kernel
            is inefficient on such narrow heads). Not with ``pretrained_path``.
    """

    def __init__(
        self,
        temporal: str = "shift",
        size: str = "sd",
        in_channels: int = 4,
        input_size: int | Sequence[int] = 32,
        num_frames: int = 16,
        learn_sigma: bool = False,
        cross_attention_dim: int = 0,
        shift: Mapping[str, Any] | None = None,
        use_text_mask: bool = False,
        pretrained_path: str | None = None,
        pretrained_subfolder: str | None = "unet",
        gradient_checkpointing: bool = False,
        head_width: int | None = None,
    ) -> None:
        super().__init__()
        if temporal not in TEMPORAL_MODES:
            raise ConfigError(
                "model.temporal", f"unknown value {temporal!r}; choose one of {', '.join(TEMPORAL_MODES)}"
            )
        check_size(size)
        self.temporal = temporal
        self.in_channels = checked_int("model.in_channels", in_channels, 1)
        height, width = checked_frame_size("model.input_size", input_size)
        self.input_size: int | tuple[int, int] = height if height == width else (height, width)
        self.num_frames = checked_int("model.num_frames", num_frames, 1)
        self.learn_sigma = bool(learn_sigma)
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        cross_attention_dim = checked_int("model.cross_attention_dim", cross_attention_dim, 0)
        self.shift_fraction = _shift_fraction(shift)
        self.use_text_mask = bool(use_text_mask)
        self.gradient_checkpointing = bool(gradient_checkpointing)
        if head_width is not None:
            head_width = checked_int("model.head_width", head_width, 1)
            if pretrained_path is not None:
                raise ConfigError(
                    "model.head_width",
                    "must be null with model.pretrained_path (the pretrained U-Net's config.json sets its heads)",
                )

        if pretrained_path is not None:
            unet = self._load_pretrained(str(pretrained_path), pretrained_subfolder, cross_attention_dim)
        else:
            from diffusers import UNet2DConditionModel

            width = cross_attention_dim or DEFAULT_CROSS_ATTENTION_DIM[size]
            unet = UNet2DConditionModel(
                **unet_config(size, self.in_channels, self.out_channels, self.input_size, width, head_width)
            )
        self.unet = unet
        self.cross_attention_dim = int(unet.config.cross_attention_dim)

        #: the frame layout of the current U-Net call, read by every temporal hook of this model
        self.frame_context = FrameContext()
        self.temporal_layers = build_temporal_layers(unet) if temporal == "attention" else None
        self._hooks = HookHandles()
        self.attach_temporal_hooks()
        if self.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing(FrameCheckpoint(self.frame_context))

    # ----------------------------------------------------------------------------------------- setup
    def _load_pretrained(self, path: str, subfolder: str | None, cross_attention_dim: int) -> nn.Module:
        """Load the image U-Net's weights and check that they fit the configured model."""
        if self.learn_sigma:
            raise ConfigError(
                "diffusion.learn_sigma",
                "a pretrained Stable Diffusion U-Net predicts eps only (out_channels = in_channels), so it "
                "cannot learn the variance; use diffusion=sd (learn_sigma: false, loss: simple)",
            )
        from vidgen.models.stable_diffusion import load_unet  # lazy: diffusers' model loading

        unet = load_unet(path, subfolder=subfolder)
        config = unet.config
        if int(config.in_channels) != self.in_channels:
            raise ConfigError(
                "model.in_channels",
                f"the pretrained U-Net at {path} takes {config.in_channels} channels, the model is configured "
                f"for {self.in_channels} (autoencoder.latent_channels)",
            )
        if int(config.out_channels) != self.out_channels:
            raise ConfigError(
                "model.pretrained_path",
                f"the U-Net at {path} outputs {config.out_channels} channels, expected {self.out_channels}",
            )
        if cross_attention_dim and int(config.cross_attention_dim) != cross_attention_dim:
            raise ConfigError(
                "model.cross_attention_dim",
                f"the pretrained U-Net at {path} reads text states of width {config.cross_attention_dim}, the "
                f"text conditioner gives {cross_attention_dim} (conditioner.text_dim)",
            )
        return unet

    def attach_temporal_hooks(self) -> None:
        """(Re)attach this model's temporal hooks to ``self.unet`` (the shift or the temporal attention;
        nothing for ``temporal=none``). Any hooks attached before by this model are removed first."""
        self.detach_temporal_hooks()
        if self.temporal == "shift":
            self._hooks = attach_temporal_shift(self.unet, self.frame_context, self.shift_fraction)
        elif self.temporal == "attention":
            self._hooks = attach_temporal_attention(self.unet, self.temporal_layers, self.frame_context)

    def detach_temporal_hooks(self) -> None:
        """Remove this model's temporal hooks: ``self.unet`` becomes the plain image U-Net again."""
        self._hooks.remove()

    @property
    def num_temporal_hooks(self) -> int:
        """Number of hooks this model has attached to its U-Net."""
        return len(self._hooks)

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def sharding_units(self) -> list[nn.Module]:
        """FSDP units (:func:`vidgen.lit.parallel.sharding_units`): the U-Net's down blocks, mid block and
        up blocks. The rest (conv_in/out, time embedding, temporal layers) stays with the root."""
        units = [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]
        return [unit for unit in units if unit is not None]

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Predict the denoiser output of every frame.

        Args:
            x: ``(B, C, F, H, W)`` noisy latent video.
            t: ``(B,)`` timesteps, int or float (a 0-d tensor is broadcast to the batch).
            cond: optional; ``text (B, L, cross_attention_dim)`` [+ ``text_mask (B, L)``, used with
                ``use_text_mask``]; ``num_video_frames`` for image-video joint training, with ``images``
                (each appended image's own caption) for a text model. No text: the unconditional all-zero
                token. ``labels`` are not supported.

        Returns:
            ``(B, C_out, F, H, W)`` with ``C_out = 2C`` when ``learn_sigma`` else ``C``.
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"LatentUNet expects x of shape (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}"
            )
        batch, frames = x.shape[0], x.shape[2]
        clip = self._clip_frames(cond, frames)
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        text, mask = self._frame_text(cond, batch, x)
        with self.frame_context.use(frames, clip):
            out = self.unet(
                frames_to_batch(x),  # (B*F, C, H, W)
                t.repeat_interleave(frames),  # (B*F,)
                encoder_hidden_states=text,  # (B*F, L, D)
                encoder_attention_mask=mask,  # (B*F, L) | None
                return_dict=False,
            )[0]
        return batch_to_frames(out, frames)

    def _frame_text(
        self, cond: Cond | None, batch: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every frame's text states ``(B*F, L, D)`` (and mask ``(B*F, L)`` with ``use_text_mask``), clip-major:
        the clip's caption for its frames and, under image-video joint training, each appended image's own
        caption (``cond.images``) for the image."""
        frames = x.shape[2]
        text, mask = self._text(cond, batch, x)  # the clip's, checked
        if cond is None or cond.text is None or not cond.has_own_frame_conditions(frames):
            return text.repeat_interleave(frames, dim=0), None if mask is None else mask.repeat_interleave(
                frames, dim=0
            )
        per_frame = cond.per_frame(frames)
        frame_mask = None if mask is None else per_frame.text_mask.to(x.dtype)
        return per_frame.text.to(x.dtype), frame_mask

    def _clip_frames(self, cond: Cond | None, total: int) -> int | None:
        """Frames of the video clip under image-video joint training; None when every frame is the clip."""
        value = cond.num_video_frames if cond is not None else None
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= total:
            raise ValueError(f"cond.num_video_frames must be an integer in [0, {total}], got {value!r}")
        return None if value == total else value

    def _text(
        self, cond: Cond | None, batch: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(text (B, L, D), mask (B, L) | None)`` for the cross-attention; ``(B, 1, D)`` zeros without text."""
        if cond is not None and cond.labels is not None:
            raise ValueError(
                "LatentUNet has no class conditioning (labels were given); use conditioner=text (captions, "
                "e.g. a template 'a video of {class}') or conditioner=none"
            )
        if cond is None or cond.text is None:
            return x.new_zeros(batch, 1, self.cross_attention_dim), None
        text, mask = cond.checked_text(batch, self.cross_attention_dim, "model.cross_attention_dim")
        mask = mask.to(x.dtype) if self.use_text_mask and mask is not None else None
        return text.to(x.dtype), mask
