"""Latte: a latent video diffusion transformer (Ma et al., 2024), variant 1 ("interleaved fusion").

Variant 1 alternates transformer blocks: even index = spatial block (attention over the ``h*w`` patch
tokens of one frame), odd index = temporal block (attention over the ``F`` tokens at one spatial
position). Tokens come from a per-frame 2D patch embedding; a frozen 2D sin-cos table is added to every
frame's tokens and a frozen 1D sin-cos temporal table once, right before the first temporal block (the
Latte reference code's behaviour). Timestep (+ class) enter every block through adaLN-Zero (the paper's
S-AdaLN). Parameter names follow DiT so an ImageNet DiT checkpoint can initialise the model.

Extension seams (the paper's other design choices come in a later issue): the block schedule is a
``layout`` of :class:`BlockRole` built by :func:`block_layout` from the variant; the token arrangement
each role needs lives in ``_ARRANGEMENT``; embedding (``_embed``), conditioning (``_condition``), temporal
position (``_add_temporal_position``) and decoding (``_unembed``) are separate methods, so a tube patch
embedding, "all tokens" injection or RoPE replaces one of them.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.nn import (
    AdaLNModulation,
    FinalLayer,
    FramePatchEmbed,
    LabelEmbedder,
    TimestepEmbedder,
    TransformerBlock,
    sincos_1d_table,
    sincos_2d_table,
)


class LatteSize(NamedTuple):
    depth: int
    hidden_size: int
    num_heads: int


#: Model sizes (paper Table 4; ``tiny`` is the CPU demo size: 4 blocks, hidden 96, 4 heads).
LATTE_SIZES: dict[str, LatteSize] = {
    "tiny": LatteSize(depth=4, hidden_size=96, num_heads=4),
    "S": LatteSize(depth=12, hidden_size=384, num_heads=6),
    "B": LatteSize(depth=12, hidden_size=768, num_heads=12),
    "L": LatteSize(depth=24, hidden_size=1024, num_heads=16),
    "XL": LatteSize(depth=28, hidden_size=1152, num_heads=16),
}

LATTE_VARIANTS = (1, 2, 3, 4)
IMPLEMENTED_VARIANTS = (1,)


class BlockRole(Enum):
    """What a block attends over."""

    SPATIAL = "spatial"  # the h*w tokens of one frame
    TEMPORAL = "temporal"  # the F tokens of one spatial position


#: einops layout of the token tensor that each role's block receives: ``(B, groups, sequence, D)``.
_ARRANGEMENT: dict[BlockRole, str] = {
    BlockRole.SPATIAL: "b f s d",
    BlockRole.TEMPORAL: "b s f d",
}


def block_layout(variant: int, depth: int) -> list[BlockRole]:
    """The role of each of the ``depth`` blocks for a Latte variant.

    Variant 1 (interleaved fusion): spatial, temporal, spatial, temporal, ...
    """
    if variant == 1:
        return [BlockRole.SPATIAL if i % 2 == 0 else BlockRole.TEMPORAL for i in range(depth)]
    raise ConfigError("model.variant", f"variant {variant}: only variant 1 is implemented so far")


def _check_int(key: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r}")
    return value


class Latte(nn.Module):
    """Latte denoiser. ``forward(x, t, cond) -> out`` on latent videos ``(B, C, F, H, W)``.

    Constructor arguments are the config keys under ``model``.

    Args:
        size: one of :data:`LATTE_SIZES` (``tiny, S, B, L, XL``).
        depth, hidden_size, num_heads: override the size table's value when not None.
        patch_size: spatial patch size ``p``.
        in_channels: latent channels ``C``.
        input_size: latent height = width the frozen spatial table is built for.
        num_frames: number of frames the frozen temporal table is built for.
        mlp_ratio: MLP hidden size / hidden size.
        learn_sigma: output ``2C`` channels (eps and the variance interpolation) instead of ``C``.
        num_classes: 0 = unconditional; ``> 0`` adds a label table with ``num_classes + 1`` rows (the last
            is the null class used for classifier-free guidance).
        variant: Latte model variant (paper Fig. 2); only 1 is implemented so far.
        gradient_checkpointing: recompute each block's activations in the backward pass.
    """

    def __init__(
        self,
        size: str = "S",
        depth: int | None = None,
        hidden_size: int | None = None,
        num_heads: int | None = None,
        patch_size: int = 2,
        in_channels: int = 4,
        input_size: int = 32,
        num_frames: int = 16,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        num_classes: int = 0,
        variant: int = 1,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if size not in LATTE_SIZES:
            raise ConfigError("model.size", f"unknown size {size!r}; choose one of {', '.join(LATTE_SIZES)}")
        base = LATTE_SIZES[size]
        depth = _check_int("model.depth", base.depth if depth is None else depth, 1)
        hidden_size = _check_int(
            "model.hidden_size", base.hidden_size if hidden_size is None else hidden_size, 1
        )
        num_heads = _check_int("model.num_heads", base.num_heads if num_heads is None else num_heads, 1)
        if hidden_size % num_heads:
            raise ConfigError(
                "model.num_heads", f"hidden size {hidden_size} is not divisible by {num_heads} heads"
            )
        if hidden_size % 4:
            raise ConfigError(
                "model.hidden_size", f"must be divisible by 4 (2D sin-cos position table), got {hidden_size}"
            )
        patch_size = _check_int("model.patch_size", patch_size, 1)
        in_channels = _check_int("model.in_channels", in_channels, 1)
        input_size = _check_int("model.input_size", input_size, 1)
        if input_size % patch_size:
            raise ConfigError(
                "model.input_size", f"input size {input_size} is not divisible by patch size {patch_size}"
            )
        num_frames = _check_int("model.num_frames", num_frames, 1)
        if not isinstance(mlp_ratio, int | float) or int(hidden_size * mlp_ratio) < 1:
            raise ConfigError("model.mlp_ratio", f"must be a positive number, got {mlp_ratio!r}")
        num_classes = _check_int("model.num_classes", num_classes, 0)
        if variant not in LATTE_VARIANTS:
            raise ConfigError(
                "model.variant",
                f"unknown variant {variant!r}; choose one of {LATTE_VARIANTS} "
                f"(only variant 1 is implemented so far)",
            )
        if variant not in IMPLEMENTED_VARIANTS:
            raise ConfigError(
                "model.variant",
                f"variant {variant} is described in the Latte paper, but only variant 1 is implemented so far",
            )

        self.size = size
        self.depth = depth
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = bool(learn_sigma)
        self.input_size = input_size
        self.num_frames = num_frames
        self.num_classes = num_classes
        self.variant = variant
        self.gradient_checkpointing = bool(gradient_checkpointing)
        self.layout: list[BlockRole] = block_layout(variant, depth)

        self.x_embedder = FramePatchEmbed(in_channels, hidden_size, patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size) if num_classes > 0 else None
        self.blocks = nn.ModuleList(TransformerBlock(hidden_size, num_heads, mlp_ratio) for _ in self.layout)
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)

        # Frozen position tables: buffers, not parameters, and not saved in the state dict (recomputed).
        self.register_buffer("pos_embed", torch.empty(0), persistent=False)  # (h*w, D)
        self.register_buffer("temp_embed", torch.empty(0), persistent=False)  # (F, D)
        self.reset_position_tables()
        self.initialize_weights()

    # ----------------------------------------------------------------------------------------- setup
    def reset_position_tables(self) -> None:
        """(Re)compute the frozen sin-cos tables on the module's current device (e.g. after ``to_empty``)."""
        grid = self.input_size // self.patch_size
        device = self.x_embedder.proj.weight.device
        self.pos_embed = sincos_2d_table(self.hidden_size, grid, grid, device=device)
        self.temp_embed = sincos_1d_table(self.hidden_size, self.num_frames, device=device)

    def initialize_weights(self) -> None:
        """DiT's initialisation, all in one place.

        Xavier-uniform linears with zero bias; the patch-embedding conv as a linear; label table and
        timestep MLP normal(0.02); every adaLN modulation and the final layer zero, so each block starts
        as the identity and the model outputs zeros.
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

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None = None) -> torch.Tensor:
        """Predict the denoiser output.

        Args:
            x: ``(B, C, F, H, W)`` noisy latent video; ``H`` and ``W`` multiples of ``patch_size``. Other
                ``F``, ``H``, ``W`` than the configured ones work (tables are recomputed for them).
            t: ``(B,)`` timesteps, int or float (a 0-d tensor is broadcast to the batch).
            cond: ``labels (B,)`` required when ``num_classes > 0`` (null class = ``num_classes``).

        Returns:
            ``(B, C_out, F, H, W)`` with ``C_out = 2C`` when ``learn_sigma`` else ``C``.
        """
        self._check_input(x)
        c = self._condition(t, cond, batch=x.shape[0])  # (B, D)
        tokens = self._embed(x)  # (B, F, h*w, D)

        arrangement = BlockRole.SPATIAL
        temporal_position_added = False
        for block, role in zip(self.blocks, self.layout, strict=True):
            tokens = self._rearrange(tokens, arrangement, role)
            arrangement = role
            if role is BlockRole.TEMPORAL and not temporal_position_added:
                tokens = self._add_temporal_position(tokens)
                temporal_position_added = True
            tokens = self._run_block(block, tokens, c)

        tokens = self._rearrange(tokens, arrangement, BlockRole.SPATIAL)  # (B, F, h*w, D)
        return self._unembed(self.final_layer(tokens, c), x.shape[3] // self.patch_size)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Latte expects x of shape (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}"
            )
        if x.shape[3] % self.patch_size or x.shape[4] % self.patch_size:
            raise ValueError(
                f"frame size {tuple(x.shape[3:])} is not divisible by the patch size {self.patch_size}"
            )

    def _condition(self, t: torch.Tensor, cond: Cond | None, batch: int) -> torch.Tensor:
        """Conditioning vector ``c = t_emb(t) [+ label_emb(labels)]``: ``(B, D)``."""
        if t.dim() == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        c = self.t_embedder(t)
        labels = cond.labels if cond is not None else None
        if cond is not None and (cond.text is not None or cond.pooled_text is not None):
            raise ValueError(
                "Latte variant 1 takes class labels only; text conditioning is not implemented yet"
            )
        if self.y_embedder is not None:
            if labels is None:
                raise ValueError(
                    f"this Latte is class-conditional (model.num_classes={self.num_classes}) but no labels "
                    f"were given; pass cond=Cond(labels=...), using {self.num_classes} for the null class"
                )
            c = c + self.y_embedder(labels)
        elif labels is not None:
            raise ValueError(
                "this Latte is unconditional (model.num_classes=0) but was given labels; "
                "set model.num_classes to train a class-conditional model"
            )
        return c

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, F, H, W)`` -> tokens ``(B, F, h*w, D)`` with the spatial position table added."""
        tokens = self.x_embedder(x)
        table = self._spatial_table(x.shape[3] // self.patch_size, x.shape[4] // self.patch_size)
        return tokens + table.to(tokens.dtype)  # the same (h*w, D) table for every frame

    def _spatial_table(self, h: int, w: int) -> torch.Tensor:
        """``(h*w, D)`` frozen 2D table; the configured one unless the grid differs."""
        grid = self.input_size // self.patch_size
        if (h, w) == (grid, grid):
            return self.pos_embed
        return sincos_2d_table(self.hidden_size, h, w, device=self.pos_embed.device)

    def _add_temporal_position(self, tokens: torch.Tensor) -> torch.Tensor:
        """Add the frozen 1D temporal table to tokens arranged ``(B, h*w, F, D)``."""
        num_frames = tokens.shape[2]
        if num_frames <= self.num_frames:
            table = self.temp_embed[:num_frames]  # rows 0..F-1 are exactly the table for F frames
        else:
            table = sincos_1d_table(self.hidden_size, num_frames, device=self.temp_embed.device)
        return tokens + table.to(tokens.dtype)

    @staticmethod
    def _rearrange(tokens: torch.Tensor, current: BlockRole, wanted: BlockRole) -> torch.Tensor:
        """Move tokens from the arrangement ``current`` needs to the one ``wanted`` needs (no-op if equal)."""
        if current is wanted:
            return tokens
        return rearrange(tokens, f"{_ARRANGEMENT[current]} -> {_ARRANGEMENT[wanted]}").contiguous()

    def _run_block(self, block: TransformerBlock, tokens: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, tokens, c, use_reentrant=False)
        return block(tokens, c)

    def _unembed(self, out: torch.Tensor, h: int) -> torch.Tensor:
        """Patch outputs ``(B, F, h*w, p*p*C_out)`` -> video ``(B, C_out, F, h*p, w*p)`` (DiT's unpatchify)."""
        p = self.patch_size
        return rearrange(out, "b f (h w) (p1 p2 c) -> b c f (h p1) (w p2)", h=h, p1=p, p2=p)
