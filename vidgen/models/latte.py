"""Latte: a latent video diffusion transformer (Ma et al., 2024; seed 002), every design axis of the paper.

One implementation; each design choice of the paper's Sec. 3.2-3.3 is a constructor argument (a config key
under ``model``), and every block is the one :class:`~vidgen.nn.transformer.TransformerBlock` with a role.

Model variants (``variant``, Fig. 2; ``depth`` = number of blocks for every variant):
    0. DiT: every block attends over space within its frame (no temporal block, so frames never mix and the
       temporal table / RoPE is never used); an image model, CMD's content-frame model (Yu et al. 2024,
       ``ContentDiT``). With ``num_frames=1`` (inputs ``(B, C, 1, H, W)``) it is DiT itself. Not one of
       Latte's variants; same per-block parameters as variant 1.
    1. interleaved fusion: even blocks spatial (attention over the ``h*w`` tokens of one frame), odd blocks
       temporal (attention over the ``F`` tokens of one spatial position). The reference code's model.
    2. late fusion: the first ``ceil(depth/2)`` blocks spatial, the rest temporal: the same blocks as
       variant 1 in another order, so the same parameter count (needs ``depth >= 2``).
    3. factorised self-attention: each block = spatial MHA, then temporal MHA, then one MLP (each MHA with
       its own pre-LN and residual, as ViViT's model 3). Under adaLN both MHAs use the block's one
       attention (shift, scale, gate) triple: one ``6h`` modulation per block as in every variant.
    4. factorised MHA: each block has one MHA whose first half of the heads attends over space and second
       half over time; the two results, reshaped back to ``(B, F, S, D)``, are summed through the output
       projection (``W [z_s; z_t] = W_s z_s + W_t z_t``, the seed's "add z_t' to z_s") and passed on to
       the MLP. Same parameters as a variant-1 block (needs an even ``num_heads``).

Patch embedding (``patch_embed``, Sec. 3.3.1): ``frame`` = a 2D ``p x p`` patch embedding of every frame
(default); ``tube`` = a Conv3d over ``s x p x p`` tubes (``tube_stride = s``; ``num_frames`` divisible by
``s``) giving ``F/s`` token frames. The linear decoder then emits ``p*p*s*C_out`` numbers per token (a
bottleneck of ``s*C_out`` channels, so the ``s`` frames of a tube get independent outputs: with ``C_out``
channels they would be linear maps of the same ``C_out`` numbers, rank ``C_out`` of ``s*C_out``), and after
unpatchify a 3D transposed convolution ``s*C_out -> C_out`` (kernel = stride = ``(s, 1, 1)``, started as
channel-block selection, i.e. as a direct tubelet decoder) brings the output back to ``F`` frames. The
temporal table / RoPE then index token frames.

Timestep/class injection (``injection``, Sec. 3.3.2): ``adaln`` = S-AdaLN (DiT's adaLN-Zero) in every block
and the final layer (default); ``tokens`` = "all tokens": the timestep embedding and, when class-conditional,
the label embedding are two extra tokens (one when unconditional) at the input, and nothing is modulated
(standard pre-LN blocks with affine LayerNorms, a final layer LayerNorm -> Linear). How the condition
tokens take part in the factorised attention: every frame gets its own copy of the condition tokens,
prepended to its ``h*w`` patch tokens, so a frame has ``S = n_cond + h*w`` tokens. Spatial attention then
runs over the ``S`` tokens of one frame (the frame's condition tokens read and summarise that frame only),
and temporal attention treats each condition slot like one more spatial position: condition token ``i``
of frame ``f`` attends over condition token ``i`` of the other (clip) frames only. Space and time thus stay
as factorised as for patches (a condition token never carries another frame's information through a
spatial layer, nor another position's through a temporal layer); the absolute temporal table is added to
the condition slots as to every position. The condition tokens are dropped before the final layer.

Temporal position (``temporal_position``, Sec. 3.3.3): ``absolute`` = a frozen 1D sin-cos table added once,
at the input of the first block that attends over time (before block 1 for variant 1, before block
``ceil(depth/2)`` for variant 2, before block 0, whose spatial MHA therefore sees it too, for variants 3/4;
the reference code's "before the first temporal block"); ``rope`` = rotary embedding of queries and keys
in every temporal attention (:mod:`vidgen.nn.rope`), no additive table. RoPE needs an even head dimension.

Text (``text_dim > 0``, Latte's T2V model built on PixArt-alpha): every block that attends over space
(variant 1/2 spatial blocks, every variant 0/3/4 block) gets a cross-attention sub-layer after its spatial
self-attention (after the split MHA in variant 4), queries = all tokens of the frame, keys/values = the
per-token text states ``cond.text`` projected by the block (``cond.text_mask`` respected). PixArt's
practice is followed: no norm, no modulation, no gate, output projection zero-initialised (a fresh text
model computes exactly what its unconditional twin does). The timestep still enters by adaLN (or tokens);
``cond.pooled_text`` is accepted and not used (as in PixArt-alpha / Latte T2V). A text model raises when
``cond.text`` is missing, a model without text when text is given.

Image-video joint training (``cond.num_video_frames = F`` with ``x`` of ``F + K`` frames; Sec. 3.3.4):
spatial attention (and cross-attention, MLPs, condition tokens) see all ``F + K`` frames, each on its own;
temporal attention runs over the first ``F`` frames only. A variant 1/2 temporal block and variant 3's
temporal sub-layer leave the ``K`` image frames untouched (the reference code skips the whole temporal
block for them); in variant 4 they get nothing from the temporal head group. Each image is conditioned on
its own label / caption (``cond.images``, as Latte's ``latte_img.py`` embeds each image's own), never on the
clip's: the spatial blocks and the final layer are modulated per frame (the clip frames by the clip's
``c``, each image by ``t_emb + its label's embedding``; under all-tokens injection each frame's label
token is its own), cross-attention reads each frame's own caption, and temporal blocks use the clip's
``c``. The temporal table / RoPE cover the ``F`` clip frames only; the output has all ``F + K`` frames.
``num_video_frames = 0`` treats every frame as an independent image. Not supported with
``patch_embed=tube`` (a tube would fuse clip frames and unrelated images): that raises a ValueError.

Parameter count, how it depends on the switches (h = hidden size, C = latent channels, p = patch, s = tube
stride; frozen position tables are buffers, not parameters). Outside the blocks: x_embedder
``p^2 C h + h``, t_embedder ``256h + h + h^2 + h``, final layer ``2h^2 + 2h + p^2 C_out (h + 1)``. Per block:
variants 0/1/2/4 ``18h^2 + 15h`` (qkv+proj ``4h^2+4h``, MLP ``8h^2+5h``, adaLN ``6h^2+6h``), variant 3
``22h^2 + 19h`` (one more MHA). ``match_params_of`` picks variant 3's depth at about variant 1's count.
``tube``: x_embedder ``+ (s-1) C p^2 h`` (Conv3d weight), the wider linear decoder ``+ (s-1) p^2 C_out (h+1)``
and the transposed conv ``s^2 C_out^2 + C_out``; ``tokens``: per block ``- 6h^2 - 6h`` (no adaLN) ``+ 2h``
per affine LayerNorm (2 per block, 3 in variant 3), final layer ``- 2h^2`` (adaLN ``2h^2 + 2h`` out, affine
LN ``2h`` in); ``rope``: no change; ``text_dim = T``: per block that attends over space
``+ 2h^2 + 2hT + 4h``; ``num_classes = n``: ``+ (n+1) h`` (label table with the null class, under
``tokens`` too); ``learn_sigma=False``: ``- p^2 C h - p^2 C``. The counts at each size, next to the paper's
Tables 3 and 4, and the FLOPs reconciled with the paper's: ``experiments/latte/README.md``
(``experiments/latte/flops.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.checks import checked_choice, checked_frame_size, checked_int
from vidgen.nn import (
    AdaLNModulation,
    BlockRole,
    CrossAttention,
    FinalLayer,
    FramePatchEmbed,
    LabelEmbedder,
    TemporalUpsample,
    TimestepEmbedder,
    TokenGrid,
    TransformerBlock,
    TubePatchEmbed,
    rope_angles,
    sincos_1d_table,
    sincos_2d_table,
)
from vidgen.nn.mlp import MLP_ACTIVATIONS
from vidgen.nn.onednn_linear import LINEAR_BACKENDS, use_onednn_linears

__all__ = [
    "INJECTIONS",
    "LATTE_SIZES",
    "LATTE_VARIANTS",
    "PATCH_EMBEDS",
    "TEMPORAL_POSITIONS",
    "BlockRole",
    "Latte",
    "LatteSize",
    "block_layout",
    "count_flops",
    "matched_depth",
]


class LatteSize(NamedTuple):
    depth: int
    hidden_size: int
    num_heads: int


#: Model sizes (paper Table 4; ``tiny``: the tiny-scale ablations' size, 4 blocks, hidden 96, 4 heads;
#: ``demo``: the CPU demo recipe's, 6 blocks, hidden 192, 4 heads, used with patch 4).
LATTE_SIZES: dict[str, LatteSize] = {
    "tiny": LatteSize(depth=4, hidden_size=96, num_heads=4),
    "demo": LatteSize(depth=6, hidden_size=192, num_heads=4),
    "S": LatteSize(depth=12, hidden_size=384, num_heads=6),
    "B": LatteSize(depth=12, hidden_size=768, num_heads=12),
    "L": LatteSize(depth=24, hidden_size=1024, num_heads=16),
    "XL": LatteSize(depth=28, hidden_size=1152, num_heads=16),
}

LATTE_VARIANTS = (0, 1, 2, 3, 4)
PATCH_EMBEDS = ("frame", "tube")
INJECTIONS = ("adaln", "tokens")
TEMPORAL_POSITIONS = ("absolute", "rope")

_SPATIAL_ARRANGEMENT = "b f s d"


def block_layout(variant: int, depth: int) -> list[BlockRole]:
    """The role of each of the ``depth`` blocks for a Latte variant.

    Variant 0 (DiT, an image model): every block spatial.
    Variant 1 (interleaved fusion): spatial, temporal, spatial, temporal, ...
    Variant 2 (late fusion): ``ceil(depth/2)`` spatial, then ``floor(depth/2)`` temporal (the same blocks
    as variant 1).
    Variant 3: every block factorised self-attention (spatial MHA, temporal MHA, MLP).
    Variant 4: every block factorised MHA (half the heads spatial, half temporal).
    """
    if variant == 0:
        return [BlockRole.SPATIAL] * depth
    if variant == 1:
        return [BlockRole.SPATIAL if i % 2 == 0 else BlockRole.TEMPORAL for i in range(depth)]
    if variant == 2:
        spatial = (depth + 1) // 2
        return [BlockRole.SPATIAL] * spatial + [BlockRole.TEMPORAL] * (depth - spatial)
    if variant == 3:
        return [BlockRole.FACTORISED_ATTENTION] * depth
    if variant == 4:
        return [BlockRole.FACTORISED_HEADS] * depth
    raise ConfigError("model.variant", f"unknown variant {variant!r}; choose one of {LATTE_VARIANTS}")


class Latte(nn.Module):
    """Latte denoiser. ``forward(x, t, cond) -> out`` on latent videos ``(B, C, F, H, W)``.

    Constructor arguments are the config keys under ``model`` (see the module docstring for what each
    design switch does and how it changes the parameter count).

    Args:
        size: one of :data:`LATTE_SIZES` (``tiny, S, B, L, XL``).
        depth, hidden_size, num_heads: override the size table's value when not None.
        patch_size: spatial patch size ``p``.
        in_channels: latent channels ``C``.
        input_size: latent side, or ``[H, W]`` for a non-square latent, the frozen spatial table is built for.
        num_frames: number of frames ``F`` the frozen temporal table is built for.
        mlp_ratio: MLP hidden size / hidden size.
        mlp_activation: the MLP's GELU: ``gelu_tanh`` (the reference's tanh approximation) or ``gelu``
            (exact; the same function to within 5e-4, 2x cheaper on a CPU without AVX-512).
        learn_sigma: output ``2C`` channels (eps and the variance interpolation) instead of ``C``.
        num_classes: 0 = unconditional; ``> 0`` adds a label table with ``num_classes + 1`` rows (the last
            is the null class used for classifier-free guidance).
        variant: Latte model variant 1-4 (paper Fig. 2), or 0: DiT, every block spatial (an image model,
            CMD's content-frame model; DiT itself with ``num_frames=1``).
        patch_embed: ``frame`` (per-frame 2D patches) or ``tube`` (3D tubes of ``tube_stride`` frames).
        tube_stride: temporal stride ``s`` of the tube embedding (used only with ``tube``).
        injection: ``adaln`` (S-AdaLN / adaLN-Zero) or ``tokens`` (timestep/class as input tokens).
        temporal_position: ``absolute`` (frozen sin-cos table) or ``rope`` (rotary, in temporal attention).
        text_dim: width of the text states ``cond.text``; 0 = no text, ``> 0`` adds cross-attention to
            every block that attends over space.
        gradient_checkpointing: recompute each block's activations in the backward pass.
        match_params_of: None, or a variant ``v``: build this variant with the depth whose trainable
            parameter count is nearest variant ``v``'s at the configured depth, width and switches (ties:
            the shallower), as the paper compares the variants at about equal size. Variant 3 matched to
            variant 1: 3 blocks instead of 4 at tiny size, 23 instead of 28 at XL. :attr:`reference_depth`
            keeps the configured depth.
    """

    def __init__(
        self,
        size: str = "S",
        depth: int | None = None,
        hidden_size: int | None = None,
        num_heads: int | None = None,
        patch_size: int = 2,
        in_channels: int = 4,
        input_size: int | Sequence[int] = 32,
        num_frames: int = 16,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        num_classes: int = 0,
        variant: int = 1,
        patch_embed: str = "frame",
        tube_stride: int = 2,
        injection: str = "adaln",
        temporal_position: str = "absolute",
        text_dim: int = 0,
        gradient_checkpointing: bool = False,
        match_params_of: int | None = None,
        linear_backend: str = "torch",
        mlp_activation: str = "gelu_tanh",
    ) -> None:
        super().__init__()
        if size not in LATTE_SIZES:
            raise ConfigError("model.size", f"unknown size {size!r}; choose one of {', '.join(LATTE_SIZES)}")
        base = LATTE_SIZES[size]
        depth = checked_int("model.depth", base.depth if depth is None else depth, 1)
        hidden_size = checked_int(
            "model.hidden_size", base.hidden_size if hidden_size is None else hidden_size, 1
        )
        num_heads = checked_int("model.num_heads", base.num_heads if num_heads is None else num_heads, 1)
        if hidden_size % num_heads:
            raise ConfigError(
                "model.num_heads", f"hidden size {hidden_size} is not divisible by {num_heads} heads"
            )
        if hidden_size % 4:
            raise ConfigError(
                "model.hidden_size", f"must be divisible by 4 (2D sin-cos position table), got {hidden_size}"
            )
        patch_size = checked_int("model.patch_size", patch_size, 1)
        in_channels = checked_int("model.in_channels", in_channels, 1)
        input_hw = checked_frame_size("model.input_size", input_size)
        if any(side % patch_size for side in input_hw):
            raise ConfigError(
                "model.input_size", f"input size {input_size} is not divisible by patch size {patch_size}"
            )
        input_size = input_hw[0] if input_hw[0] == input_hw[1] else input_hw
        num_frames = checked_int("model.num_frames", num_frames, 1)
        if not isinstance(mlp_ratio, int | float) or int(hidden_size * mlp_ratio) < 1:
            raise ConfigError("model.mlp_ratio", f"must be a positive number, got {mlp_ratio!r}")
        num_classes = checked_int("model.num_classes", num_classes, 0)
        checked_choice("model.variant", variant, LATTE_VARIANTS)
        if variant == 2 and depth < 2:
            raise ConfigError(
                "model.depth", "variant 2 (late fusion) needs depth >= 2: spatial, then temporal"
            )
        if variant == 4 and num_heads % 2:
            raise ConfigError(
                "model.num_heads",
                f"variant 4 splits the heads half spatial, half temporal: {num_heads} is odd",
            )
        checked_choice("model.patch_embed", patch_embed, PATCH_EMBEDS)
        tube_stride = checked_int("model.tube_stride", tube_stride, 1)
        if patch_embed == "tube" and num_frames % tube_stride:
            raise ConfigError(
                "model.tube_stride",
                f"num_frames {num_frames} is not divisible by the tube's temporal stride {tube_stride}",
            )
        checked_choice("model.injection", injection, INJECTIONS)
        checked_choice("model.temporal_position", temporal_position, TEMPORAL_POSITIONS)
        if temporal_position == "rope" and (hidden_size // num_heads) % 2:
            raise ConfigError(
                "model.temporal_position",
                f"rope needs an even head dimension, got {hidden_size} / {num_heads} = {hidden_size // num_heads}",
            )
        text_dim = checked_int("model.text_dim", text_dim, 0)
        checked_choice("model.linear_backend", linear_backend, LINEAR_BACKENDS)
        checked_choice("model.mlp_activation", mlp_activation, tuple(MLP_ACTIVATIONS))
        #: the configured depth (:attr:`depth` differs from it when ``match_params_of`` chose another)
        self.reference_depth = depth
        if match_params_of is not None:
            checked_choice("model.match_params_of", match_params_of, LATTE_VARIANTS)
            arch = dict(
                size=size, hidden_size=hidden_size, num_heads=num_heads, patch_size=patch_size,
                in_channels=in_channels, input_size=input_size, num_frames=num_frames, mlp_ratio=mlp_ratio,
                learn_sigma=learn_sigma, num_classes=num_classes, patch_embed=patch_embed,
                tube_stride=tube_stride, injection=injection, temporal_position=temporal_position,
                text_dim=text_dim,
            )  # fmt: skip
            depth = matched_depth(variant, match_params_of, depth, **arch)

        self.size = size
        self.depth = depth
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = bool(learn_sigma)
        #: the configured latent size: one int (square) or ``(H, W)``; :attr:`grid_size` in patches
        self.input_size = input_size
        self.grid_size = (input_hw[0] // patch_size, input_hw[1] // patch_size)
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.variant = variant
        self.patch_embed = patch_embed
        self.tube_stride = tube_stride if patch_embed == "tube" else 1
        self.injection = injection
        self.temporal_position = temporal_position
        self.text_dim = text_dim
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.mlp_activation = mlp_activation
        self.layout: list[BlockRole] = block_layout(variant, depth)
        #: index of the first block that attends over time (the absolute table goes in there), or None
        self.first_temporal_block = next((i for i, r in enumerate(self.layout) if r.attends_time), None)
        modulated = injection == "adaln"
        #: condition tokens per frame under "all tokens" injection (timestep [+ label]); 0 under adaLN
        self.num_condition_tokens = 0 if modulated else 1 + (num_classes > 0)

        if patch_embed == "tube":
            self.x_embedder = TubePatchEmbed(in_channels, hidden_size, patch_size, tube_stride)
        else:
            self.x_embedder = FramePatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size) if num_classes > 0 else None
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hidden_size,
                num_heads,
                mlp_ratio,
                role=role,
                modulated=modulated,
                context_dim=text_dim,
                mlp_activation=mlp_activation,
            )
            for role in self.layout
        )
        # the tube decoder emits s * C_out channels per token frame (one block per frame of the tube)
        decoded = self.out_channels * self.tube_stride
        self.final_layer = FinalLayer(hidden_size, patch_size, decoded, modulated=modulated)
        self.temporal_upsample = (
            TemporalUpsample(decoded, self.out_channels, tube_stride) if patch_embed == "tube" else None
        )

        # Frozen position tables: buffers, not parameters, and not saved in the state dict (recomputed).
        self.register_buffer("pos_embed", torch.empty(0), persistent=False)  # (h*w, D)
        self.register_buffer("temp_embed", torch.empty(0), persistent=False)  # (F / s, D)
        self.reset_position_tables()
        self.initialize_weights()
        #: "torch" (F.linear: MKL on a CPU) or "onednn" (vidgen/nn/onednn_linear.py: CPU fp32 products by oneDNN)
        self.linear_backend = linear_backend
        if linear_backend == "onednn":
            use_onednn_linears(self)

    # ----------------------------------------------------------------------------------------- setup
    def reset_position_tables(self) -> None:
        """(Re)compute the frozen sin-cos tables on the module's current device (e.g. after ``to_empty``)."""
        device = self.x_embedder.proj.weight.device
        self.pos_embed = sincos_2d_table(self.hidden_size, *self.grid_size, device=device)
        self.temp_embed = sincos_1d_table(
            self.hidden_size, self.num_frames // self.tube_stride, device=device
        )

    def initialize_weights(self) -> None:
        """DiT's initialisation, all in one place.

        Xavier-uniform linears with zero bias; the patch-embedding conv as a linear; label table and
        timestep MLP normal(0.02); every adaLN modulation and the final layer zero, so each block starts
        as the identity and the model outputs zeros. Cross-attention output projections zero (PixArt);
        the tube's temporal upsampler starts as channel-block selection (the decoder decodes tubelets).
        """

        def _xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

        self.apply(_xavier)
        proj = self.x_embedder.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))
        nn.init.zeros_(proj.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for module in self.modules():
            if isinstance(module, AdaLNModulation | FinalLayer):
                module.zero_()
            elif isinstance(module, CrossAttention):
                nn.init.zeros_(module.proj.weight)
                nn.init.zeros_(module.proj.bias)
            elif isinstance(module, TemporalUpsample):
                module.reset_parameters()

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Predict the denoiser output.

        Args:
            x: ``(B, C, F, H, W)`` noisy latent video; ``H`` and ``W`` multiples of ``patch_size`` (and ``F``
                of ``tube_stride`` with the tube embedding). Other ``F``, ``H``, ``W`` than the configured
                ones work (tables are recomputed for them).
            t: ``(B,)`` timesteps, int or float (a 0-d tensor is broadcast to the batch).
            cond: ``labels (B,)`` required when ``num_classes > 0`` (null class = ``num_classes``);
                ``text (B, L, text_dim)`` [+ ``text_mask (B, L)``] required when ``text_dim > 0``;
                ``num_video_frames`` for image-video joint training (frames after it are independent images,
                conditioned by ``images``, their own labels / captions, when the model is conditional).

        Returns:
            ``(B, C_out, F, H, W)`` with ``C_out = 2C`` when ``learn_sigma`` else ``C``.
        """
        self._check_input(x)
        batch = x.shape[0]
        clip = self._clip_frames(x, cond)
        frames = x.shape[2] // self.tube_stride  # F', the token frames
        # joint training: the appended images' own conditions (never the clip's), one per frame
        frame_cond = (
            cond.per_frame(frames) if cond is not None and cond.has_own_frame_conditions(frames) else None
        )
        c, c_frames, cond_tokens = self._condition(t, cond, frame_cond, batch, frames)
        tokens = self._embed(x)  # (B, F', h*w, D)
        if cond_tokens is not None:  # each frame's condition tokens before its patches
            tokens = torch.cat([cond_tokens.to(tokens.dtype), tokens], dim=2)  # (B, F', n_cond + h*w, D)
        grid = self._grid(cond, frame_cond, batch, clip, tokens)

        arrangement = _SPATIAL_ARRANGEMENT
        for i, (block, role) in enumerate(zip(self.blocks, self.layout, strict=True)):
            tokens = self._rearrange(tokens, arrangement, role.arrangement)
            arrangement = role.arrangement
            if i == self.first_temporal_block and self.temporal_position == "absolute":
                tokens = self._add_temporal_position(tokens, role.time_axis, clip)
            # temporal blocks see the clip only, under the clip's condition; every other block and the
            # final layer modulate each frame by its own (the same as the clip's without joint images)
            block_c = c if role is BlockRole.TEMPORAL or c_frames is None else c_frames
            tokens = self._run_block(block, tokens, block_c, replace(grid, time_axis=role.time_axis))

        tokens = self._rearrange(tokens, arrangement, _SPATIAL_ARRANGEMENT)  # (B, F', S, D)
        tokens = tokens[:, :, self.num_condition_tokens :]  # drop the condition tokens
        out = self.final_layer(tokens, c if c_frames is None else c_frames)
        return self._unembed(out, x.shape[3] // self.patch_size)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Latte expects x of shape (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}"
            )
        if x.shape[3] % self.patch_size or x.shape[4] % self.patch_size:
            raise ValueError(
                f"frame size {tuple(x.shape[3:])} is not divisible by the patch size {self.patch_size}"
            )
        if x.shape[2] % self.tube_stride:
            raise ValueError(
                f"{x.shape[2]} frames are not divisible by the tube's temporal stride {self.tube_stride} "
                f"(model.tube_stride)"
            )

    def _clip_frames(self, x: torch.Tensor, cond: Cond | None) -> int | None:
        """Frames of the video clip under image-video joint training; None when every frame is the clip."""
        value = cond.num_video_frames if cond is not None else None
        if value is None:
            return None
        total = x.shape[2]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= total:
            raise ValueError(f"cond.num_video_frames must be an integer in [0, {total}], got {value!r}")
        if value == total:
            return None
        if self.patch_embed == "tube":
            raise ValueError(
                "image-video joint training (cond.num_video_frames < frames of x) is not supported with "
                "model.patch_embed=tube: a tube of tube_stride frames would fuse clip frames and unrelated "
                "images; use model.patch_embed=frame or data.joint_image_frames=0"
            )
        return value

    def _condition(
        self, t: torch.Tensor, cond: Cond | None, frame_cond: Cond | None, batch: int, frames: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(c, c_frames, tokens)`` of the timestep (and class) embeddings.

        S-AdaLN: ``c = t_emb(t) [+ label_emb(labels)]: (B, D)``, the clip's, and ``c_frames: (B, F', D)``,
        one per frame, when ``frame_cond`` (the per-frame condition under image-video joint training, from
        :meth:`Cond.per_frame`) gives the appended images their own labels; else None. All-tokens injection:
        no ``c``, and condition tokens ``[t_emb, label_emb]: (B, F', n_cond, D)``, each frame's own label.
        """
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        t_emb = self.t_embedder(t)  # (B, D)
        labels = cond.labels if cond is not None else None
        y_clip = y_frames = None
        if self.y_embedder is not None:
            if labels is None:
                raise ValueError(
                    f"this Latte is class-conditional (model.num_classes={self.num_classes}) but no labels "
                    f"were given; pass cond=Cond(labels=...), using {self.num_classes} for the null class"
                )
            y_clip = self.y_embedder(labels)  # (B, D)
            if frame_cond is not None:
                y_frames = self.y_embedder(frame_cond.labels).view(batch, frames, -1)  # (B, F', D)
        elif labels is not None:
            raise ValueError(
                "this Latte is unconditional (model.num_classes=0) but was given labels; "
                "set model.num_classes to train a class-conditional model"
            )
        if self.injection == "tokens":
            per_frame = [t_emb[:, None].expand(-1, frames, -1)]
            if y_clip is not None:
                per_frame.append(y_frames if y_frames is not None else y_clip[:, None].expand(-1, frames, -1))
            return None, None, torch.stack(per_frame, dim=2)  # (B, F', n_cond, D)
        if y_clip is None:
            return t_emb, None, None
        c_frames = None if y_frames is None else t_emb[:, None] + y_frames
        return t_emb + y_clip, c_frames, None

    def _grid(
        self, cond: Cond | None, frame_cond: Cond | None, batch: int, clip: int | None, tokens: torch.Tensor
    ) -> TokenGrid:
        """The space-time grid every block attends in: clip frames, RoPE tables, text context (one caption
        per sample, or per frame ``(B, F', L, T)`` when ``frame_cond`` gives joint training's images their
        own)."""
        rope = None
        if self.temporal_position == "rope":
            frames = tokens.shape[1] if clip is None else clip
            positions = torch.arange(frames, device=tokens.device)
            dtype = torch.float64 if tokens.dtype == torch.float64 else torch.float32
            rope = rope_angles(positions, self.hidden_size // self.num_heads, dtype=dtype)
        context, mask = self._text(cond, batch)
        if context is not None and frame_cond is not None:
            frames = tokens.shape[1]
            context = frame_cond.text.view(batch, frames, *context.shape[1:])
            if mask is not None:
                mask = frame_cond.text_mask.view(batch, frames, -1)
        if context is not None:
            context = context.to(tokens.dtype)
        return TokenGrid(clip_frames=clip, rope=rope, context=context, context_mask=mask)

    def _text(self, cond: Cond | None, batch: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Check and return ``(text (B, L, text_dim), text_mask (B, L) | None)``; ``(None, None)`` without text."""
        given = cond is not None and any(v is not None for v in (cond.text, cond.text_mask, cond.pooled_text))
        if self.text_dim == 0:
            if given:
                raise ValueError(
                    "this Latte has no text conditioning (model.text_dim=0) but was given text; "
                    "set model.text_dim (conditioner=text) to train a text-to-video model"
                )
            return None, None
        text = cond.text if cond is not None else None
        if text is None:
            raise ValueError(
                f"this Latte is text-conditional (model.text_dim={self.text_dim}) but cond.text is missing; "
                f"pass cond=Cond(text=(B, L, {self.text_dim}) states[, text_mask=(B, L)]), the empty "
                f"caption's states for the null condition"
            )
        return cond.checked_text(batch, self.text_dim, "model.text_dim")

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> tokens ``(B, F', h*w, D)`` with the spatial position table added."""
        tokens = self.x_embedder(x)
        table = self._spatial_table(x.shape[3] // self.patch_size, x.shape[4] // self.patch_size)
        return tokens + table.to(tokens.dtype)  # the same (h*w, D) table for every frame

    def _spatial_table(self, h: int, w: int) -> torch.Tensor:
        """``(h*w, D)`` frozen 2D table; the configured one unless the grid differs."""
        if (h, w) == self.grid_size:
            return self.pos_embed
        return sincos_2d_table(self.hidden_size, h, w, device=self.pos_embed.device)

    def _add_temporal_position(self, tokens: torch.Tensor, time_axis: int, clip: int | None) -> torch.Tensor:
        """Add the frozen 1D temporal table to the clip frames of tokens (``time_axis`` 1: ``(B, F, S, D)``,
        2: ``(B, S, F, D)``); frames after the clip (joint training's images) get nothing."""
        num_frames = tokens.shape[time_axis]
        clip_frames = num_frames if clip is None else clip
        if clip_frames <= self.temp_embed.shape[0]:
            table = self.temp_embed[:clip_frames]  # rows 0..F-1 are exactly the table for F frames
        else:
            table = sincos_1d_table(self.hidden_size, clip_frames, device=self.temp_embed.device)
        if clip_frames < num_frames:
            table = torch.cat([table, table.new_zeros(num_frames - clip_frames, table.shape[1])])
        if time_axis == 1:
            table = table[:, None]  # (F, 1, D) broadcasts over the S tokens of a frame
        return tokens + table.to(tokens.dtype)

    @staticmethod
    def _rearrange(tokens: torch.Tensor, current: str, wanted: str) -> torch.Tensor:
        """Move tokens from one ``(B, X, Y, D)`` arrangement to another (no-op if equal)."""
        if current == wanted:
            return tokens
        return rearrange(tokens, f"{current} -> {wanted}").contiguous()

    def _run_block(
        self, block: TransformerBlock, tokens: torch.Tensor, c: torch.Tensor | None, grid: TokenGrid
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, tokens, c, grid, use_reentrant=False)
        return block(tokens, c, grid)

    def _unembed(self, out: torch.Tensor, h: int) -> torch.Tensor:
        """Patch outputs ``(B, F', h*w, p*p*C_out)`` -> video ``(B, C_out, F, h*p, w*p)`` (DiT's unpatchify,
        then the tube's temporal upsampling ``F' -> F = F' * s``)."""
        p = self.patch_size
        video = rearrange(out, "b f (h w) (p1 p2 c) -> b c f (h p1) (w p2)", h=h, p1=p, p2=p)
        return video if self.temporal_upsample is None else self.temporal_upsample(video)


def matched_depth(variant: int, reference_variant: int, reference_depth: int, **arch: object) -> int:
    """The depth at which Latte variant ``variant`` has the trainable parameter count nearest that of
    ``reference_variant`` at ``reference_depth`` blocks, every other argument (``arch``: Latte's keyword
    arguments) the same; ties go to the shallower model. Counted on the meta device (no memory): a model's
    count is linear in its depth (``depth >= 2`` for variant 2's late fusion)."""

    def params(v: int, depth: int) -> int:
        with torch.device("meta"):
            return Latte(**arch, variant=v, depth=depth).num_params()

    target = params(reference_variant, reference_depth)
    first = 2 if variant == 2 else 1
    base, step = params(variant, first), params(variant, first + 1) - params(variant, first)
    estimate = first + (target - base) / step
    candidates = {max(first, math.floor(estimate)), max(first, math.ceil(estimate))}
    return min(sorted(candidates), key=lambda d: abs(base + (d - first) * step - target))


def count_flops(model: nn.Module, x_shape: tuple[int, ...], cond: Cond | None = None) -> int:
    """FLOPs of one forward pass of ``model`` on an input of ``x_shape`` (e.g. ``(1, 4, 16, 32, 32)``).

    Counted with ``torch.utils.flop_counter.FlopCounterMode``: matrix multiplications (linear layers,
    convolutions, attention's ``QK^T`` and ``AV``), a multiply-add counted as 2 FLOPs; element-wise work
    (norms, softmax, activations, additions) is not counted. Run it on a model built on the meta device
    (``with torch.device("meta"): Latte(...)``): no memory, no compute, exact shapes.

    Args:
        model: a denoiser ``forward(x, t, cond)``.
        x_shape: ``(B, C, F, H, W)``.
        cond: the condition (None for an unconditional model).

    Returns:
        total FLOPs as an int.
    """
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters())
    x = torch.zeros(x_shape, device=param.device, dtype=param.dtype)
    t = torch.zeros(x_shape[0], device=param.device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x, t, cond)
    return int(counter.get_total_flops())
