"""CMD's motion diffusion model (Yu et al., ICLR 2024, Sec. 3.3): a DiT on the motion latent, the content
frame given as in-context tokens.

Architecture (``forward(z_t, t, cond)``; ``h`` = hidden size, ``p`` = ``patch_size``, ``q`` =
``content_patch_size``):

1. Motion tokens. ``z_t: (B, D, F, W'+H')``, the autoencoder's motion latent, the ``W'``-indexed plane
   first (columns ``0 .. W'-1`` = the x-plane, averaged over height; ``W' .. W'+H'-1`` = the y-plane,
   averaged over width). ``Conv2d(D, h, p, stride=p)`` over ``(F, W'+H')`` gives ``N_m = (F/p) * (W'/p +
   H'/p)`` tokens, row-major: token ``(i, j)`` covers frames ``i*p ..`` and columns ``j*p ..``. ``W'`` and
   ``H'`` are multiples of ``p``, so a patch never straddles the two planes.
2. Content tokens. ``cond.content_frame: (B, C, h_c, w_c)`` (the keyframe x-bar, possibly non-square)
   through ``Conv2d(C, h, q, stride=q)``: ``N_c = (h_c/q) * (w_c/q)`` tokens, appended after the motion
   tokens (the paper's "larger patch size", in-context "dense guidance").
3. Positions (frozen sin-cos, non-persistent buffers; see :func:`motion_position_table`): motion tokens
   get a separable code of (time-patch index, plane in {x=0, y=1}, spatial-patch index within the plane),
   channels ``[0, h/4)`` time, ``[h/4, h/2)`` plane, ``[h/2, h)`` spatial index (the spatial index has the
   most positions, so it gets half the width as each axis of a 2D table does); content tokens a 2D table
   over their ``h_c/q x w_c/q`` grid (columns in the first half, rows in the second, as DiT). A learned
   segment embedding (``segment_embedder``, 2 rows: motion, content) is added to every token. The tables
   are built once for the configured grids and every input is checked against them (another shape raises
   a ValueError instead of being silently re-gridded: the x/y boundary ``W'`` is a constructor argument,
   so a latent of another ``W'+H'`` could not even be split).
4. Condition ``c: (B, h) = t_emb(t) [+ label_emb(labels)] [+ text_mlp(pooled text)]``, into every block
   and the final layer by adaLN-Zero. Blocks: ``depth`` DiT blocks (:class:`TransformerBlock`, role
   SPATIAL, on ``(B, 1, N_m + N_c, h)``): full self-attention over motion and content tokens.
5. Output. The final layer on the ``N_m`` motion tokens only, unpatchified to ``(B, 2D, F, W'+H')`` (eps
   and the variance interpolation) with ``learn_sigma``, else ``(B, D, F, W'+H')``.

Conditioning details: labels are a :class:`LabelEmbedder` with ``num_classes + 1`` rows, the null class =
``num_classes`` (as Latte; the conditioner drops labels to it). Text (``text_dim > 0``): the pooled text
``cond.pooled_text (B, text_dim)`` when set, else the masked mean of ``cond.text (B, L, text_dim)`` over
``cond.text_mask`` (all tokens without a mask; a row without any real token pools to zeros), through
``Linear(text_dim, h) -> SiLU -> Linear(h, h)``. The null text condition is whatever the conditioner's
``null()`` gives: for :class:`~vidgen.conditioning.text.TextConditioner` the empty caption's states and its
pooled (EOT) state, the very tensors a dropped caption gets in training, so the unconditional branch of
classifier-free guidance is the input the model learned as "no caption". The model has no special case for
it (a zero pooled vector, a caller's choice without an encoder, works the same way). The content frame is
never dropped: the null condition carries the same content frame (see :class:`~vidgen.conditioning.Cond`).

Differences from the release (NVlabs/CMD@8a28b7e ``models/diffusion/motion_dit.py``; the CMD spec ``cmd.md``, Sec. 6):

- B2 / B9: every grid is derived from the constructor arguments (``num_frames``, ``latent_w``,
  ``latent_h``, ``content_size``, the patch sizes), not from the video size or a default keyframe size 64.
- B3: the release builds one square 2D table of ``sqrt(N)`` for any token count (crashes unless ``N`` is a
  perfect square; for 8x32 motion tokens it lays them on a 16x16 grid) and gives motion and content tokens
  identical codes. Here: the separable motion table above, a rectangular content table, a segment embedding.
- B4: the release conditions on ``t`` only (``y`` is accepted and ignored); here ``c`` adds the class /
  pooled-text embedding.
- B5: the release's ``forward_with_cfg`` drops the keyframe and guides 3 of the eps channels; here guidance
  is :func:`vidgen.diffusion.guidance.guided_model_fn` (all eps channels, variance from the conditional
  half) with the content frame in both halves.

``compat_release=True`` reproduces the release's choices that do not crash: ``c = t_emb(t)`` only (labels
and text are accepted and ignored, and no label table or text MLP is built, whatever ``num_classes`` /
``text_dim`` say), no segment embedding. It keeps the correct rectangular position tables (the release's
square table cannot be built for most grids and scrambles the layout of the others), so its motion
positions differ from the release's; everything else (patch embeddings, blocks, final layer, initialisation)
is the release's DiT.

Parameter count (``h``, ``D``, ``C``, ``p``, ``q``; position tables are buffers, not parameters): motion
embedder ``p^2 D h + h``, content embedder ``q^2 C h + h``, t-embedder ``256 h + h + h^2 + h``, per block
``18 h^2 + 15 h``, final layer ``2 h^2 + 2 h + p^2 D_out (h + 1)`` (``D_out = 2D`` with ``learn_sigma``);
paper mode adds the segment embedding ``2 h``, labels ``(num_classes + 1) h``, text ``T h + h + h^2 + h``.
The release keeps its frozen tables as ``nn.Parameter(requires_grad=False)`` and counts them: its figure is
ours (compat) plus ``(N_m + N_c) h``. Measured at ``z: 8 x 16 x 64`` (8x32 = 256 motion tokens), content
``3 x 64 x 64`` at ``q = 4`` (256 tokens), ``learn_sigma``:

=====  =====================  ===========  ===========================  ===============  =================
size   depth / hidden / heads  compat       release (compat + 512 h)     paper, 101 cls.  paper, text 1024
=====  =====================  ===========  ===========================  ===============  =================
tiny   2 / 64 / 4              187,712      220,480                      194,368          257,600
S      12 / 384 / 6            32,517,952   32,714,560                   32,557,888       33,060,160
B      12 / 768 / 12           129,621,568  130,014,784                  129,701,440      131,000,896
L      24 / 1024 / 16          456,915,008  457,439,296                  457,021,504      459,016,256
XL     28 / 1152 / 16          673,793,344  674,383,168                  673,913,152      676,304,704
=====  =====================  ===========  ===========================  ===============  =================

"compat" = trainable parameters with ``compat_release=True``; "release" = compat + the ``512 h`` table
entries, equal to the spec's measurement of NVlabs/CMD for S, B, L and XL (``cmd.md`` Sec. 3.2); "paper,
101 cls." = ``num_classes=101`` (UCF-101: segment ``2h`` + label table ``102h``); "paper, text 1024" =
``text_dim=1024`` (OpenCLIP-H width), no labels (segment ``2h`` + text MLP ``1024h + h + h^2 + h``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from vidgen.conditioning import Cond
from vidgen.config import ConfigError
from vidgen.config.checks import checked_int
from vidgen.nn import (
    AdaLNModulation,
    FinalLayer,
    FramePatchEmbed,
    LabelEmbedder,
    TimestepEmbedder,
    TransformerBlock,
    sincos_1d,
    sincos_2d_table,
)
from vidgen.nn.transformer import BlockRole

__all__ = [
    "MOTION_DIT_SIZES",
    "MotionDiT",
    "MotionDiTSize",
    "motion_position_table",
    "patchify_motion",
    "unpatchify_motion",
]


class MotionDiTSize(NamedTuple):
    depth: int
    hidden_size: int
    num_heads: int


#: Model sizes (DiT's S/B/L/XL; ``tiny`` is the CPU test size). Parameter counts: the module docstring.
MOTION_DIT_SIZES: dict[str, MotionDiTSize] = {
    "tiny": MotionDiTSize(depth=2, hidden_size=64, num_heads=4),
    "S": MotionDiTSize(depth=12, hidden_size=384, num_heads=6),
    "B": MotionDiTSize(depth=12, hidden_size=768, num_heads=12),
    "L": MotionDiTSize(depth=24, hidden_size=1024, num_heads=16),
    "XL": MotionDiTSize(depth=28, hidden_size=1152, num_heads=16),
}

#: rows of the segment embedding
MOTION_SEGMENT, CONTENT_SEGMENT = 0, 1


def patchify_motion(z: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Motion latent ``(B, D, F, W'+H')`` -> patches ``(B, (F/p) * ((W'+H')/p), p*p*D)``.

    Tokens are row-major over ``(time patch, column patch)`` (the order of the patch-embedding conv), the
    features of a patch ordered ``(p1 p2 c)`` (DiT's, the final layer's). A pure rearrangement:
    :func:`unpatchify_motion` inverts it exactly.
    """
    p = patch_size
    if z.dim() != 4 or z.shape[2] % p or z.shape[3] % p:
        raise ValueError(f"expected (B, D, F, W'+H') with F and W'+H' divisible by {p}, got {tuple(z.shape)}")
    return rearrange(z, "b c (f p1) (s p2) -> b (f s) (p1 p2 c)", p1=p, p2=p)


def unpatchify_motion(tokens: torch.Tensor, time_patches: int, patch_size: int) -> torch.Tensor:
    """Patches ``(B, (F/p) * S, p*p*C)`` -> ``(B, C, F, S*p)`` (``S`` = column patches, ``F/p`` = ``time_patches``)."""
    p = patch_size
    return rearrange(tokens, "b (f s) (p1 p2 c) -> b c (f p1) (s p2)", f=time_patches, p1=p, p2=p)


def motion_position_table(
    dim: int,
    time_patches: int,
    width_patches: int,
    height_patches: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Separable sin-cos codes of the motion tokens, in their row-major order.

    Token ``(i, j)`` (time patch ``i``, column patch ``j``) lies in plane ``x`` (``0``) with spatial index
    ``j`` when ``j < width_patches``, else in plane ``y`` (``1``) with spatial index ``j - width_patches``.

    Args:
        dim: feature size, divisible by 8.
        time_patches: ``F / p``.
        width_patches, height_patches: ``W' / p`` (the x-plane, first) and ``H' / p`` (the y-plane).

    Returns:
        ``(time_patches * (width_patches + height_patches), dim)`` float32: channels ``[0, dim/4)`` the 1D
        sin-cos code of the time index, ``[dim/4, dim/2)`` of the plane index, ``[dim/2, dim)`` of the
        spatial index within the plane.
    """
    if dim % 8:
        raise ValueError(f"the motion position table needs a feature size divisible by 8, got {dim}")
    columns = width_patches + height_patches
    time = torch.arange(time_patches, dtype=torch.float64, device=device)[:, None].expand(-1, columns)
    col = torch.arange(columns, dtype=torch.float64, device=device)[None].expand(time_patches, -1)
    plane = (col >= width_patches).double()
    spatial = col - plane * width_patches
    parts = [
        sincos_1d(dim // 4, time.reshape(-1)),
        sincos_1d(dim // 4, plane.reshape(-1)),
        sincos_1d(dim // 2, spatial.reshape(-1)),
    ]
    return torch.cat(parts, dim=-1)


def _pair(value: int | Sequence[int], key: str) -> tuple[int, int]:
    """``int | (h, w)`` -> ``(h, w)`` of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError(key, f"must be an int or a pair (height, width), got {value!r}")
    return checked_int(key, value[0], 1), checked_int(key, value[1], 1)


def _divisible(key: str, value: int, patch: int, what: str) -> None:
    if value % patch:
        raise ConfigError(key, f"{what} {value} is not divisible by the patch size {patch}")


class MotionDiT(nn.Module):
    """CMD's motion denoiser ``forward(z_t, t, cond) -> out`` (see the module docstring).

    Args:
        motion_channels: ``D``, channels of the motion latent.
        num_frames: ``F``, frames of the motion latent.
        latent_h, latent_w: ``H'`` and ``W'``, the autoencoder's latent grid; the motion latent has
            ``W' + H'`` columns, the ``W'``-indexed (x) plane first. Both divisible by ``patch_size``.
        content_channels: ``C``, channels of the content frame.
        content_size: ``(h_c, w_c)`` (or one int for a square) of the content frame, divisible by
            ``content_patch_size``.
        size: one of :data:`MOTION_DIT_SIZES`, or None when ``depth``, ``hidden_size`` and ``num_heads``
            are all given.
        depth, hidden_size, num_heads: override the size table's value when not None.
        patch_size: ``p`` over ``(F, W'+H')``.
        content_patch_size: ``q`` over the content frame.
        mlp_ratio: MLP hidden size / hidden size.
        learn_sigma: output ``2D`` channels (eps, then the variance interpolation) instead of ``D``.
        num_classes: 0 = no labels; ``> 0`` adds a label table of ``num_classes + 1`` rows (null last).
        text_dim: 0 = no text; ``> 0`` adds the pooled-text MLP (``cond.pooled_text`` or ``cond.text``).
        compat_release: the release's conditioning (``t`` only) and no segment embedding.
    """

    def __init__(
        self,
        motion_channels: int,
        num_frames: int,
        latent_h: int,
        latent_w: int,
        content_channels: int,
        content_size: int | tuple[int, int] | list[int],
        size: str | None = "B",
        depth: int | None = None,
        hidden_size: int | None = None,
        num_heads: int | None = None,
        patch_size: int = 2,
        content_patch_size: int = 4,
        mlp_ratio: float = 4.0,
        learn_sigma: bool = True,
        num_classes: int = 0,
        text_dim: int = 0,
        compat_release: bool = False,
    ) -> None:
        super().__init__()
        depth, hidden_size, num_heads = self._size(size, depth, hidden_size, num_heads)
        p = checked_int("model.patch_size", patch_size, 1)
        q = checked_int("model.content_patch_size", content_patch_size, 1)
        self.motion_channels = checked_int("model.motion_channels", motion_channels, 1)
        self.num_frames = checked_int("model.num_frames", num_frames, 1)
        self.latent_h = checked_int("model.latent_h", latent_h, 1)
        self.latent_w = checked_int("model.latent_w", latent_w, 1)
        _divisible("model.num_frames", self.num_frames, p, "num_frames")
        _divisible("model.latent_w", self.latent_w, p, "the x-plane width W'")
        _divisible("model.latent_h", self.latent_h, p, "the y-plane width H'")
        self.content_channels = checked_int("model.content_channels", content_channels, 1)
        self.content_size = _pair(content_size, "model.content_size")
        for side in self.content_size:
            _divisible("model.content_size", side, q, "content frame side")
        if not isinstance(mlp_ratio, int | float) or int(hidden_size * mlp_ratio) < 1:
            raise ConfigError("model.mlp_ratio", f"must be a positive number, got {mlp_ratio!r}")

        self.depth, self.hidden_size, self.num_heads = depth, hidden_size, num_heads
        self.patch_size, self.content_patch_size = p, q
        self.learn_sigma = bool(learn_sigma)
        self.out_channels = 2 * self.motion_channels if self.learn_sigma else self.motion_channels
        self.num_classes = checked_int("model.num_classes", num_classes, 0)
        self.text_dim = checked_int("model.text_dim", text_dim, 0)
        self.compat_release = bool(compat_release)
        #: token grids: motion (F/p, W'/p + H'/p), content (h_c/q, w_c/q)
        self.motion_grid = (self.num_frames // p, self.latent_w // p + self.latent_h // p)
        self.content_grid = (self.content_size[0] // q, self.content_size[1] // q)
        self.num_motion_tokens = self.motion_grid[0] * self.motion_grid[1]
        self.num_content_tokens = self.content_grid[0] * self.content_grid[1]

        self.x_embedder = FramePatchEmbed(self.motion_channels, hidden_size, p)
        self.content_embedder = FramePatchEmbed(self.content_channels, hidden_size, q)
        self.t_embedder = TimestepEmbedder(hidden_size)
        paper = not self.compat_release
        self.y_embedder = LabelEmbedder(self.num_classes, hidden_size) if paper and self.num_classes else None
        self.text_embedder = (
            nn.Sequential(
                nn.Linear(self.text_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
            )
            if paper and self.text_dim
            else None
        )
        self.segment_embedder = nn.Embedding(2, hidden_size) if paper else None
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, num_heads, mlp_ratio, role=BlockRole.SPATIAL) for _ in range(depth)
        )
        self.final_layer = FinalLayer(hidden_size, p, self.out_channels)

        # Frozen position tables: buffers, not parameters, and not saved (recomputed from the arguments).
        self.register_buffer("motion_pos_embed", torch.empty(0), persistent=False)  # (N_m, h)
        self.register_buffer("content_pos_embed", torch.empty(0), persistent=False)  # (N_c, h)
        self.reset_position_tables()
        self.initialize_weights()

    @staticmethod
    def _size(
        size: str | None, depth: int | None, hidden_size: int | None, num_heads: int | None
    ) -> tuple[int, int, int]:
        """``(depth, hidden_size, num_heads)`` from the size table and the overrides, checked."""
        if size is None:
            if None in (depth, hidden_size, num_heads):
                raise ConfigError("model.size", "size=None needs depth, hidden_size and num_heads")
            base = MotionDiTSize(0, 0, 0)
        elif size in MOTION_DIT_SIZES:
            base = MOTION_DIT_SIZES[size]
        else:
            raise ConfigError(
                "model.size", f"unknown size {size!r}; choose one of {', '.join(MOTION_DIT_SIZES)}"
            )
        depth = checked_int("model.depth", base.depth if depth is None else depth, 1)
        hidden = checked_int("model.hidden_size", base.hidden_size if hidden_size is None else hidden_size, 1)
        heads = checked_int("model.num_heads", base.num_heads if num_heads is None else num_heads, 1)
        if hidden % heads:
            raise ConfigError("model.num_heads", f"hidden size {hidden} is not divisible by {heads} heads")
        if hidden % 8:
            raise ConfigError(
                "model.hidden_size",
                f"must be divisible by 8 (the separable motion position table), got {hidden}",
            )
        return depth, hidden, heads

    # ----------------------------------------------------------------------------------------- setup
    def reset_position_tables(self) -> None:
        """(Re)compute the frozen tables for the configured grids on the module's device (e.g. after
        ``to_empty``)."""
        device = self.x_embedder.proj.weight.device
        p = self.patch_size
        self.motion_pos_embed = motion_position_table(
            self.hidden_size, self.num_frames // p, self.latent_w // p, self.latent_h // p, device=device
        )
        self.content_pos_embed = sincos_2d_table(self.hidden_size, *self.content_grid, device=device)

    def initialize_weights(self) -> None:
        """DiT's initialisation: xavier-uniform linears (zero bias), the patch-embedding convs as linears,
        timestep MLP, label table and segment embedding normal(0.02); every adaLN modulation and the final
        layer zero, so each block starts as the identity and the model outputs zeros."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embedder in (self.x_embedder, self.content_embedder):
            weight = embedder.proj.weight
            nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
            nn.init.zeros_(embedder.proj.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        if self.segment_embedder is not None:
            nn.init.normal_(self.segment_embedder.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, AdaLNModulation | FinalLayer):
                module.zero_()

    def num_params(self, trainable_only: bool = True) -> int:
        """Number of parameters (only those with ``requires_grad`` when ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def num_tokens(self) -> int:
        """``N_m + N_c``, the sequence length of every block."""
        return self.num_motion_tokens + self.num_content_tokens

    # --------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Cond | None) -> torch.Tensor:
        """Predict eps (and the variance interpolation) of the motion latent.

        Args:
            x: ``(B, D, F, W'+H')`` noisy motion latent, exactly the configured ``D``, ``F``, ``W'+H'``.
            t: ``(B,)`` timesteps (a 0-d tensor is broadcast to the batch).
            cond: ``content_frame (B, C, h_c, w_c)`` always (the configured ``C``, ``h_c``, ``w_c``);
                ``labels (B,)`` when ``num_classes > 0`` (null = ``num_classes``); ``pooled_text
                (B, text_dim)`` or ``text (B, L, text_dim)`` [+ ``text_mask``] when ``text_dim > 0``.
                Under ``compat_release`` labels and text are ignored.

        Returns:
            ``(B, 2D, F, W'+H')`` with ``learn_sigma``, else ``(B, D, F, W'+H')``.
        """
        batch = self._check_input(x)
        frame = self._content_frame(cond, batch).to(x.dtype)
        c = self._condition(t, cond, batch).to(x.dtype)
        motion = self.x_embedder(x[:, :, None])[:, 0]  # (B, N_m, h)
        content = self.content_embedder(frame[:, :, None])[:, 0]  # (B, N_c, h)
        motion = motion + self.motion_pos_embed.to(x.dtype)
        content = content + self.content_pos_embed.to(x.dtype)
        if self.segment_embedder is not None:
            segments = self.segment_embedder.weight.to(x.dtype)
            motion = motion + segments[MOTION_SEGMENT]
            content = content + segments[CONTENT_SEGMENT]
        tokens = torch.cat([motion, content], dim=1)[:, None]  # (B, 1, N_m + N_c, h)
        for block in self.blocks:
            tokens = block(tokens, c)
        out = self.final_layer(tokens[:, 0, : self.num_motion_tokens], c)  # (B, N_m, p*p*D_out)
        return unpatchify_motion(out, self.motion_grid[0], self.patch_size)

    def _check_input(self, x: torch.Tensor) -> int:
        """The batch size of ``x``, checked against the configured motion latent."""
        columns = self.latent_w + self.latent_h
        expected = (self.motion_channels, self.num_frames, columns)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"MotionDiT expects the motion latent of shape (B, {expected[0]}, {expected[1]}, {columns}) "
                f"(D, F, W'+H' = {self.latent_w}+{self.latent_h}), got {tuple(x.shape)}"
            )
        return x.shape[0]

    def _content_frame(self, cond: Cond | None, batch: int) -> torch.Tensor:
        """``cond.content_frame``, checked: ``(B, C, h_c, w_c)``."""
        frame = None if cond is None else cond.content_frame
        expected = (batch, self.content_channels, *self.content_size)
        if frame is None:
            raise ValueError(
                f"MotionDiT needs cond.content_frame of shape {expected} (the content frame the motion is "
                f"denoised for, in both halves of classifier-free guidance); it is missing"
            )
        if tuple(frame.shape) != expected:
            raise ValueError(f"cond.content_frame must have shape {expected}, got {tuple(frame.shape)}")
        return frame

    def _condition(self, t: torch.Tensor, cond: Cond | None, batch: int) -> torch.Tensor:
        """``c = t_emb(t) [+ label_emb(labels)] [+ text_mlp(pooled text)]: (B, h)`` (``t_emb`` alone under
        ``compat_release``)."""
        if t.dim() == 0:
            t = t.expand(batch)
        if tuple(t.shape) != (batch,):
            raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
        c = self.t_embedder(t)
        if self.compat_release:
            return c
        labels = None if cond is None else cond.labels
        if self.y_embedder is not None:
            if labels is None or tuple(labels.shape) != (batch,):
                got = None if labels is None else tuple(labels.shape)
                raise ValueError(
                    f"this MotionDiT is class-conditional (model.num_classes={self.num_classes}): cond.labels "
                    f"of shape ({batch},) is required (null class = {self.num_classes}), got {got}"
                )
            c = c + self.y_embedder(labels).to(c.dtype)
        elif labels is not None:
            raise ValueError("this MotionDiT has no labels (model.num_classes=0) but was given cond.labels")
        pooled = self._pooled_text(cond, batch)
        if pooled is not None:
            c = c + self.text_embedder(pooled.to(c.dtype))
        return c

    def _pooled_text(self, cond: Cond | None, batch: int) -> torch.Tensor | None:
        """``(B, text_dim)``: ``cond.pooled_text``, else the masked mean of ``cond.text``; None without text."""
        given = cond is not None and any(v is not None for v in (cond.text, cond.text_mask, cond.pooled_text))
        if self.text_embedder is None:
            if given:
                raise ValueError(
                    "this MotionDiT has no text conditioning (model.text_dim=0) but was given text"
                )
            return None
        if cond is not None and cond.pooled_text is not None:
            pooled = cond.pooled_text
            if tuple(pooled.shape) != (batch, self.text_dim):
                raise ValueError(
                    f"cond.pooled_text must have shape ({batch}, {self.text_dim}), got {tuple(pooled.shape)}"
                )
            return pooled
        if cond is None or cond.text is None:
            raise ValueError(
                f"this MotionDiT is text-conditional (model.text_dim={self.text_dim}): give cond.pooled_text "
                f"({batch}, {self.text_dim}) or cond.text ({batch}, L, {self.text_dim}); the null condition is "
                f"the conditioner's null() (the empty caption's states)"
            )
        text, mask = cond.checked_text(batch, self.text_dim, "model.text_dim")
        if mask is None:
            return text.mean(dim=1)
        weights = mask.to(text.dtype)[..., None]  # (B, L, 1)
        return (text * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
