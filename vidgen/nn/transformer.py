"""The transformer block shared by every Latte variant: what it attends over is its :class:`BlockRole`.

One class, four roles (Latte, seed 002, Sec. 3.2 and Fig. 2):

====================  =============================================================================
role                  sub-layers (each pre-LN with a residual connection)
====================  =============================================================================
SPATIAL               self-attention over space [, cross-attention to text], MLP      (variants 1, 2)
TEMPORAL              self-attention over time, MLP                                    (variants 1, 2)
FACTORISED_ATTENTION  self-attention over space [, cross-attention], self-attention over time, MLP
                      (variant 3, "factorised self-attention"; ViViT model 3's order and residuals)
FACTORISED_HEADS      one self-attention, half the heads over space and half over time, the two
                      outputs summed through the output projection [, cross-attention], MLP (variant 4)
====================  =============================================================================

Conditioning (``modulated=True``, S-AdaLN = DiT's adaLN-Zero): ``SiLU -> Linear(h, 6h)`` of the conditioning
vector gives (shift, scale, gate) for the self-attention sub-layer(s) and for the MLP. In the factorised
self-attention block (variant 3) the spatial and the temporal attention sub-layer both use the attention
triple: one 6h modulation per block whatever the variant, so a variant-3 block has the parameters of a
DiT block plus one attention (22h^2 + 19h; how that compares with the paper's Table 3:
``experiments/latte/README.md``). The gates start at zero, so every block starts as the identity.

``modulated=False`` (Latte's "all tokens" injection: the condition enters as tokens): the block is a
standard pre-LN transformer block (the paper's Fig. 4b) with affine LayerNorms and ungated residuals.

Cross-attention (``context_dim > 0``; only in blocks that attend over space): PixArt-alpha's placement,
after the self-attention and before the MLP, with no normalisation, no modulation and no gate; its output
projection is zero-initialised by the model, so a text model starts as its unconditional twin.

Per-frame conditions (image-video joint training, Latte's ``latte_img.py``): the conditioning vector may be
``c: (B, F, D)``, one per frame, and the text context ``(B, F, L, C)``, one caption per frame, so that the
images appended after a clip are modulated by and attend to their own label / caption. Temporal attention
never reaches the images (see :meth:`TransformerBlock.forward`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum

import torch
from torch import nn

from vidgen.nn.adaln import AdaLNModulation, modulate
from vidgen.nn.attention import Attention, CrossAttention
from vidgen.nn.mlp import Mlp
from vidgen.nn.spacetime import Axis, TokenGrid


class BlockRole(Enum):
    """What a block attends over."""

    SPATIAL = "spatial"  # the S tokens of one frame
    TEMPORAL = "temporal"  # the F tokens of one spatial position
    FACTORISED_ATTENTION = "spatial_then_temporal"  # variant 3: spatial MHA, then temporal MHA, one MLP
    FACTORISED_HEADS = "split_heads"  # variant 4: half the heads spatial, half temporal, one MHA

    @property
    def attends_space(self) -> bool:
        return self is not BlockRole.TEMPORAL

    @property
    def attends_time(self) -> bool:
        return self is not BlockRole.SPATIAL

    @property
    def arrangement(self) -> str:
        """The einops layout of ``(B, X, Y, D)`` tokens this role is fed with (fewest copies)."""
        return "b s f d" if self is BlockRole.TEMPORAL else "b f s d"

    @property
    def time_axis(self) -> int:
        return 2 if self is BlockRole.TEMPORAL else 1


def _layer_norm(hidden_size: int, affine: bool) -> nn.LayerNorm:
    return nn.LayerNorm(hidden_size, elementwise_affine=affine, eps=1e-6)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block on space-time tokens ``(B, X, Y, D)``; see the module docstring.

    Args:
        hidden_size, num_heads, mlp_ratio: width, heads, MLP hidden size / width.
        mlp_activation: the MLP's GELU (:data:`~vidgen.nn.mlp.MLP_ACTIVATIONS`; ``gelu_tanh``: DiT's).
        role: what the block attends over (:class:`BlockRole`).
        modulated: adaLN-Zero conditioning (True) or a plain block with affine LayerNorms (False).
        context_dim: width of the text states for cross-attention; 0 = none. Ignored (no cross-attention)
            for TEMPORAL blocks.

    Parameter names follow DiT (``norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2,
    adaLN_modulation.1``); the extra sub-layers are ``norm_temporal / attn_temporal`` (variant 3) and
    ``cross_attn`` (PixArt's name).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        role: BlockRole = BlockRole.SPATIAL,
        modulated: bool = True,
        context_dim: int = 0,
        mlp_activation: str = "gelu_tanh",
    ) -> None:
        super().__init__()
        self.role = role
        affine = not modulated
        self.norm1 = _layer_norm(hidden_size, affine)
        self.attn = Attention(hidden_size, num_heads, qkv_bias=True)
        self.norm_temporal = self.attn_temporal = self.cross_attn = None
        if role is BlockRole.FACTORISED_ATTENTION:
            self.norm_temporal = _layer_norm(hidden_size, affine)
            self.attn_temporal = Attention(hidden_size, num_heads, qkv_bias=True)
        if role is BlockRole.FACTORISED_HEADS and num_heads % 2:
            raise ValueError(f"a split-heads block needs an even number of heads, got {num_heads}")
        if context_dim > 0 and role.attends_space:
            self.cross_attn = CrossAttention(hidden_size, context_dim, num_heads)
        self.norm2 = _layer_norm(hidden_size, affine)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), mlp_activation)
        self.adaLN_modulation = AdaLNModulation(hidden_size, 6) if modulated else None
        self._first_axes: tuple[Axis, ...] = {
            BlockRole.SPATIAL: (Axis.SPACE,),
            BlockRole.TEMPORAL: (Axis.TIME,),
            BlockRole.FACTORISED_ATTENTION: (Axis.SPACE,),
            BlockRole.FACTORISED_HEADS: (Axis.SPACE, Axis.TIME),
        }[role]

    def forward(
        self, x: torch.Tensor, c: torch.Tensor | None = None, grid: TokenGrid | None = None
    ) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, X, Y, D)`` tokens arranged as ``grid`` says (default ``(B, F, S, D)``; a SPATIAL block
                then attends over ``Y`` within each ``X``). Any ``(B, *groups, L, D)`` input with one group
                axis works for a SPATIAL block.
            c: ``(B, D)`` conditioning vector, or ``(B, F, D)`` one per frame of ``x``; required when
                modulated, ignored otherwise.
            grid: space-time arrangement, clip frames, RoPE tables and text context
                (:class:`~vidgen.nn.spacetime.TokenGrid`); None = ``TokenGrid()``.

        Returns:
            ``(B, X, Y, D)``. With ``grid.clip_frames`` smaller than the number of frames (image-video
            joint training), a TEMPORAL block leaves the frames after the clip untouched, as the Latte
            reference code does (the independent images skip the whole temporal block), and so does the
            temporal sub-layer of a FACTORISED_ATTENTION block (variant 3); in a FACTORISED_HEADS block
            (variant 4) those frames get nothing from the temporal head group, and every other sub-layer.
        """
        grid = TokenGrid() if grid is None else grid
        squeeze = x.dim() == 3  # (B, L, D): one group
        if squeeze:
            x = x[:, None]
        if self.role is BlockRole.TEMPORAL:
            out = self._on_clip_frames(x, grid, lambda clip, clip_grid: self._forward(clip, c, clip_grid))
        else:
            out = self._forward(x, c, grid)
        return out[:, 0] if squeeze else out

    @staticmethod
    def _on_clip_frames(
        x: torch.Tensor, grid: TokenGrid, layer: Callable[[torch.Tensor, TokenGrid], torch.Tensor]
    ) -> torch.Tensor:
        """``layer(clip tokens, grid)`` on the clip's frames of ``x`` only; the frames after the clip (joint
        training's independent images) pass through untouched."""
        dim, keep = grid.time_axis, grid.num_clip_frames(x)
        if keep == x.shape[dim]:
            return layer(x, grid)
        clip = x.narrow(dim, 0, keep)
        if keep > 0:
            clip = layer(clip, replace(grid, clip_frames=None))
        return torch.cat([clip, x.narrow(dim, keep, x.shape[dim] - keep)], dim=dim)

    def _forward(self, x: torch.Tensor, c: torch.Tensor | None, grid: TokenGrid) -> torch.Tensor:
        if self.adaLN_modulation is not None:
            if c is None:
                raise ValueError("an adaLN-modulated block needs the conditioning vector c")
            if c.dim() == 3 and c.shape[1] != x.shape[grid.time_axis]:
                c = c[:, : x.shape[grid.time_axis]]  # a TEMPORAL block on the clip frames of a per-frame c
            mods = self.adaLN_modulation(c, token_dims=x.dim() - 2, frame_axis=grid.time_axis)
        else:
            mods = (None,) * 6
        attn_mod, mlp_mod = mods[:3], mods[3:]
        x = self._residual(
            x, self.norm1, lambda h: self.attn.forward_grid(h, grid, self._first_axes), *attn_mod
        )
        if self.cross_attn is not None:
            x = x + self._cross_attend(x, grid)
        if self.attn_temporal is not None:
            x = self._on_clip_frames(
                x, grid, lambda clip, clip_grid: self._temporal(clip, clip_grid, attn_mod)
            )
        return self._residual(x, self.norm2, self.mlp, *mlp_mod)

    def _temporal(
        self, x: torch.Tensor, grid: TokenGrid, attn_mod: tuple[torch.Tensor | None, ...]
    ) -> torch.Tensor:
        """Variant 3's temporal self-attention sub-layer on the clip frames ``x`` (the attention
        modulation triple, per frame ones narrowed to those frames)."""
        frames = x.shape[grid.time_axis]
        mods = tuple(
            m if m is None or m.shape[grid.time_axis] == 1 else m.narrow(grid.time_axis, 0, frames)
            for m in attn_mod
        )
        temporal = self.attn_temporal
        return self._residual(
            x, self.norm_temporal, lambda h: temporal.forward_grid(h, grid, (Axis.TIME,)), *mods
        )

    def _cross_attend(self, x: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
        """Cross-attention output for ``x: (B, F, S, D)``: every token of a sample attends to its caption
        (``grid.context (B, L, C)``), or every token of a frame to its frame's caption (``(B, F, L, C)``)."""
        context, mask = grid.context, grid.context_mask
        if context is None:
            raise ValueError("this block has cross-attention but the grid carries no text context")
        if context.dim() == 3:
            b = x.shape[0]
            return self.cross_attn(x.reshape(b, -1, x.shape[-1]), context, mask).view_as(x)
        if grid.time_axis != 1 or context.shape[:2] != x.shape[:2]:
            raise ValueError(
                f"per-frame text context {tuple(context.shape)} needs (B, F, S, D) tokens with the same B, F; "
                f"got {tuple(x.shape)} with time_axis {grid.time_axis}"
            )
        frames = x.flatten(0, 1).flatten(1, -2)  # (B*F, S, D)
        out = self.cross_attn(frames, context.flatten(0, 1), None if mask is None else mask.flatten(0, 1))
        return out.view_as(x)

    @staticmethod
    def _residual(
        x: torch.Tensor,
        norm: nn.Module,
        layer: Callable[[torch.Tensor], torch.Tensor],
        shift: torch.Tensor | None,
        scale: torch.Tensor | None,
        gate: torch.Tensor | None,
    ) -> torch.Tensor:
        """``x + gate * layer(modulate(norm(x), shift, scale))`` (plain ``x + layer(norm(x))`` unmodulated)."""
        h = norm(x)
        if shift is not None:
            h = modulate(h, shift, scale)
        out = layer(h)
        return x + out if gate is None else torch.addcmul(x, gate, out)
