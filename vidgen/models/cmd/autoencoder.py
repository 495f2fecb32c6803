"""CMD's video autoencoder (stage 1 of CMD, Yu et al. ICLR 2024): a content frame plus a motion latent.

Paper formulation (Sec. 3.1), for a clip ``x = x^{1:F}`` of ``F`` frames, ``C`` channels, ``H x W`` pixels
(or SD latents), patch size ``p``, latent grid ``H' x W' = H/p x W/p``, width ``C' = dim``:

* base encoder: per-frame ``p x p`` patch embedding, ``depth`` divided space-time blocks
  (:class:`~vidgen.nn.divided_block.DividedSpaceTimeBlock`) giving ``u: (B, C', F, H', W')``.
* content head: ``ConvTranspose2d(C' -> C, p, p)`` per frame gives logits ``(B, C, F, H, W)``; the content
  frame ``xbar = sum_f x_f * softmax_f(logits)_f`` is a per-channel, per-pixel convex combination of the
  input frames: ``(B, C, H, W)``, in the input space.
* motion head: ``z_x = Conv1x1(C' -> D)(mean_{H'} u)``, indexed by ``w``: ``(B, D, F, W')``, and
  ``z_y = Conv1x1(C' -> D)(mean_{W'} u)``, indexed by ``h``: ``(B, D, F, H')``; the motion latent is
  ``z_m = tanh(cat([z_x, z_y], -1)): (B, D, F, W' + H')``, the ``w``-indexed half first (as the release).
* decoder: ``v_t = Linear(p^2 C -> C')`` of the content frame's patches ``(B, C', H', W')``,
  ``v_x = Conv1x1(D -> C')(z_x)``, ``v_y = Conv1x1(D -> C')(z_y)``, the broadcast sum
  ``v[b, c, f, h, w] = v_t[b, c, h, w] + v_x[b, c, f, w] + v_y[b, c, f, h]``, ``depth`` divided blocks,
  ``ConvTranspose2d(C' -> C, p, p)`` per frame, then ``2 sigmoid(y) - 1`` (``output="bounded"``, pixels in
  ``(-1, 1)``) or nothing (``output="linear"``, SD latents).

Differences from the release (NVlabs/CMD ``ProjectedAutoencoder``; ``shared/reference/cmd.md`` Sec. 1, 6):

* B7: the release has no positional information at all (its RoPE tables are built and never used), so
  it is permutation-equivariant over frames and patches. ``position="rope"`` (default, as PVDM) rotates
  q/k by 1D RoPE over the frame index in the time attention and by 2D axial RoPE over the patch
  ``(row, col)`` in the space attention; ``position="none"`` reproduces the release. RoPE touches q/k
  only, so a static clip still gives a time-constant motion latent and its own frame as content frame.
* B8: the release decoder splits ``z_m`` at ``H'`` although its first part is ``W'`` long (a crash when
  ``H' != W'``); here it is split at ``W'``, so non-square inputs work.
* layout: :meth:`CMDAutoencoder.decode` returns ``(B, C, F, H, W)``, not the release's ``(b t) c h w``,
  and :meth:`CMDAutoencoder.forward` returns ``(recon, content, motion)`` (the release: recon, content).
* the patch embeddings are :class:`~vidgen.nn.patch_embed.FramePatchEmbed` (``Conv2d(C, C', p, stride=p)``),
  the same map and parameter count as the release's ``Linear`` on ``(p1 p2 c)``-ordered patches; a release
  weight ``W: (C', p*p*C)`` is ``W.reshape(C', p, p, C).permute(0, 3, 1, 2)`` here.
* attention heads: ``num_heads`` is configurable; the release uses 8 (head_dim 48), the paper preset 6
  (head_dim 64, as PVDM). Initialisation is PyTorch's default (nothing is zero-initialised).

Size presets (:data:`CMD_AE_SIZES`; explicit ``dim`` / ``depth`` / ``num_heads`` / ``patch_size`` /
``motion_dim`` override the preset's value; ``size=None`` is ``paper``). Trainable parameters (they do not
depend on the input size or the frame count; ``h = dim``, per block ``20 h^2 + 23 h``, outside the blocks
``4 p^2 C h + 4 D h + 4 h + 2 D + 2 C``):

=========  ===  =====  =====  ===  ==  ============  ============
size       dim  depth  heads  p    D   C = 3         C = 4
=========  ===  =====  =====  ===  ==  ============  ============
tiny       32   1      2      2    8   45,142        45,656
release    384  8      8      2    8   47,359,510    47,365,656
paper      384  8      6      2    8   47,359,510    47,365,656
=========  ===  =====  =====  ===  ==  ============  ============

The release count (C = 3 at 64x64 pixels, C = 4 for SD latents) is the spec's (Sec. 1.5, test 12).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from vidgen.config import ConfigError
from vidgen.config.checks import checked_choice, checked_frame_size, checked_int
from vidgen.nn.divided_block import DividedSpaceTimeBlock
from vidgen.nn.patch_embed import FramePatchEmbed
from vidgen.nn.rope import axial_rope_angles, rope_angles

__all__ = ["CMD_AE_OUTPUTS", "CMD_AE_POSITIONS", "CMD_AE_SIZES", "CMDAESize", "CMDAutoencoder"]


class CMDAESize(NamedTuple):
    dim: int
    depth: int
    num_heads: int
    patch_size: int
    motion_dim: int


#: Size presets: ``tiny`` (CPU tests; head_dim 16, divisible by 4 for axial RoPE), ``release`` (NVlabs/CMD:
#: head_dim 48), ``paper`` (PVDM's head_dim 64).
CMD_AE_SIZES: dict[str, CMDAESize] = {
    "tiny": CMDAESize(dim=32, depth=1, num_heads=2, patch_size=2, motion_dim=8),
    "release": CMDAESize(dim=384, depth=8, num_heads=8, patch_size=2, motion_dim=8),
    "paper": CMDAESize(dim=384, depth=8, num_heads=6, patch_size=2, motion_dim=8),
}
CMD_AE_POSITIONS = ("rope", "none")
CMD_AE_OUTPUTS = ("bounded", "linear")


class DividedTransformer(nn.Module):
    """A stack of divided space-time blocks, with the RoPE tables of the token grid when ``rope`` is set."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, rope: bool, gradient_checkpointing: bool
    ) -> None:
        super().__init__()
        self.rope = rope
        self.head_dim = dim // num_heads
        self.gradient_checkpointing = gradient_checkpointing
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(dim, num_heads) for _ in range(depth))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``tokens: (B, F, H'*W', D)`` (patches row-major on the ``grid = (H', W')``) -> ``(B, F, H'*W', D)``."""
        time_rope = space_rope = None
        if self.rope:
            kw = {"dtype": tokens.dtype}
            frames = torch.arange(tokens.shape[1], device=tokens.device)
            time_rope = rope_angles(frames, self.head_dim, **kw)
            space_rope = axial_rope_angles(*grid, self.head_dim, device=tokens.device, **kw)
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, time_rope, space_rope, use_reentrant=False)
            else:
                tokens = block(tokens, time_rope, space_rope)
        return tokens


class CMDAutoencoder(nn.Module):
    """CMD autoencoder: ``encode(x) -> (content, motion)``, ``decode(content, motion) -> x`` (module docstring).

    Shapes: ``x: (B, C, F, H, W)``, ``content: (B, C, H, W)``, ``motion: (B, D, F, W' + H')`` with
    ``(H', W') = (H/p, W/p)``. The network runs for any frame count ``F`` (``num_frames`` is the default
    layout, used by :meth:`motion_shape`) and any ``H, W`` divisible by ``p``.

    Args:
        in_channels: ``C`` (3 for pixels, 4 for SD latents).
        input_size: ``(H, W)``, or one int for a square input; divisible by ``patch_size``.
        num_frames: ``F`` of the default layout.
        dim, depth, num_heads, patch_size, motion_dim: width ``C'``, blocks per encoder / decoder, heads,
            ``p``, ``D``; None takes the preset's value.
        position: ``rope`` (paper / PVDM) or ``none`` (the release, bug B7).
        output: ``bounded`` (``2 sigmoid(y) - 1``, pixel space) or ``linear`` (raw, latent space).
        size: a preset of :data:`CMD_AE_SIZES`; None = ``paper``.
        gradient_checkpointing: recompute each block's activations in the backward pass (no effect on the
            result; not part of :meth:`arch_config`).
    """

    def __init__(
        self,
        in_channels: int,
        input_size: int | tuple[int, int] | list[int],
        num_frames: int,
        dim: int | None = None,
        depth: int | None = None,
        num_heads: int | None = None,
        patch_size: int | None = None,
        motion_dim: int | None = None,
        position: str = "rope",
        output: str = "bounded",
        size: str | None = None,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        preset = "paper" if size is None else checked_choice("model.size", size, CMD_AE_SIZES)
        base = CMD_AE_SIZES[preset]

        def pick(key: str, value: int | None) -> int:
            return checked_int(f"model.{key}", getattr(base, key) if value is None else value, 1)

        self.dim, self.depth, self.num_heads = (
            pick("dim", dim),
            pick("depth", depth),
            pick("num_heads", num_heads),
        )
        self.patch_size, self.motion_dim = pick("patch_size", patch_size), pick("motion_dim", motion_dim)
        self.in_channels = checked_int("model.in_channels", in_channels, 1)
        self.num_frames = checked_int("model.num_frames", num_frames, 1)
        self.input_size = checked_frame_size("model.input_size", input_size)
        self.position = checked_choice("model.position", position, CMD_AE_POSITIONS)
        self.output = checked_choice("model.output", output, CMD_AE_OUTPUTS)
        if any(side % self.patch_size for side in self.input_size):
            raise ConfigError(
                "model.input_size", f"{self.input_size} is not divisible by the patch size {self.patch_size}"
            )
        if self.dim % self.num_heads:
            raise ConfigError("model.num_heads", f"dim {self.dim} is not divisible by {self.num_heads} heads")
        head_dim = self.dim // self.num_heads
        if self.position == "rope" and head_dim % 4:
            raise ConfigError(
                "model.num_heads",
                f"position='rope' (axial 2D RoPE) needs dim / num_heads divisible by 4, got {head_dim}",
            )

        c, h, p, d = self.in_channels, self.dim, self.patch_size, self.motion_dim
        rope, ckpt = self.position == "rope", bool(gradient_checkpointing)
        # encoder
        self.patch_embed = FramePatchEmbed(c, h, p)
        self.encoder = DividedTransformer(h, self.depth, self.num_heads, rope, ckpt)
        self.content_head = nn.ConvTranspose2d(h, c, kernel_size=p, stride=p)
        self.motion_x_head = nn.Conv2d(h, d, kernel_size=1)
        self.motion_y_head = nn.Conv2d(h, d, kernel_size=1)
        # decoder
        self.content_embed = FramePatchEmbed(c, h, p)
        self.motion_x_embed = nn.Conv2d(d, h, kernel_size=1)
        self.motion_y_embed = nn.Conv2d(d, h, kernel_size=1)
        self.decoder = DividedTransformer(h, self.depth, self.num_heads, rope, ckpt)
        self.output_head = nn.ConvTranspose2d(h, c, kernel_size=p, stride=p)

    # ----------------------------------------------------------------------------------------- layout
    @property
    def latent_size(self) -> tuple[int, int]:
        """``(H', W') = (H/p, W/p)`` of the configured input size."""
        return self.input_size[0] // self.patch_size, self.input_size[1] // self.patch_size

    @property
    def content_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one content frame."""
        return (self.in_channels, *self.input_size)

    def motion_shape(self, num_frames: int | None = None) -> tuple[int, int, int]:
        """``(D, F, W' + H')`` of one motion latent (``F`` defaults to :attr:`num_frames`)."""
        frames = self.num_frames if num_frames is None else num_frames
        return self.motion_dim, frames, sum(self.latent_size)

    def arch_config(self) -> dict:
        """Everything that changes what the latents mean; ``CMDAutoencoder(**arch_config())`` rebuilds it.

        ``input_size`` is a list ``[H, W]``, so the dict compares equal after a YAML / JSON round trip.
        """
        return {
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "num_frames": self.num_frames,
            "dim": self.dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "patch_size": self.patch_size,
            "motion_dim": self.motion_dim,
            "position": self.position,
            "output": self.output,
        }

    def _grid(self, height: int, width: int) -> tuple[int, int]:
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"input {height}x{width} is not divisible by the patch size {p}")
        return height // p, width // p

    def _per_frame_output(self, head: nn.Module, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``tokens: (B, F, H'*W', C')`` -> ``head`` (a ``p x p`` transposed conv) per frame -> ``(B, C, F, H, W)``."""
        frames = rearrange(tokens, "b f (h w) d -> (b f) d h w", h=grid[0])
        return rearrange(head(frames), "(b f) c h w -> b c f h w", b=tokens.shape[0])

    # ---------------------------------------------------------------------------------------- encoder
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Base encoder: ``x: (B, C, F, H, W)`` -> ``u: (B, F, H'*W', C')`` (patches row-major)."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, F, H, W), got {tuple(x.shape)}")
        grid = self._grid(*x.shape[-2:])
        return self.encoder(self.patch_embed(x), grid)

    def _weights(self, u: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return self._per_frame_output(self.content_head, u, grid).softmax(dim=2)

    def _motion(self, u: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        planes = rearrange(u, "b f (h w) d -> b d f h w", h=grid[0])
        z_x = self.motion_x_head(planes.mean(dim=-2))  # (B, D, F, W'): averaged over rows, indexed by w
        z_y = self.motion_y_head(planes.mean(dim=-1))  # (B, D, F, H'): averaged over columns, indexed by h
        return torch.tanh(torch.cat([z_x, z_y], dim=-1))

    def content_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax-over-frames weights of the content frame: ``(B, C, F, H, W)``, >= 0, summing to 1 over F."""
        return self._weights(self.features(x), self._grid(*x.shape[-2:]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: (B, C, F, H, W)`` -> ``(content (B, C, H, W), motion (B, D, F, W' + H'))``; motion in (-1, 1)."""
        u = self.features(x)
        grid = self._grid(*x.shape[-2:])
        content = (x * self._weights(u, grid)).sum(dim=2)
        return content, self._motion(u, grid)

    # ---------------------------------------------------------------------------------------- decoder
    def _decoder_input(
        self, content: torch.Tensor, motion: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """The broadcast sum ``v_t + v_x + v_y`` as tokens ``(B, F, H'*W', C')``, and the grid ``(H', W')``."""
        if content.ndim != 4 or content.shape[1] != self.in_channels:
            raise ValueError(f"content: expected (B, {self.in_channels}, H, W), got {tuple(content.shape)}")
        grid = self._grid(*content.shape[-2:])
        expected = (content.shape[0], self.motion_dim, sum(grid))
        if motion.ndim != 4 or (motion.shape[0], motion.shape[1], motion.shape[3]) != expected:
            raise ValueError(
                f"motion: expected (B, D, F, W' + H') = ({expected[0]}, {expected[1]}, F, {expected[2]}) "
                f"for content {tuple(content.shape)}, got {tuple(motion.shape)}"
            )
        v_t = rearrange(self.content_embed(content[:, :, None]), "b 1 (h w) d -> b d h w", h=grid[0])
        v_x = self.motion_x_embed(motion[..., : grid[1]])  # (B, C', F, W'): the w-indexed half comes first
        v_y = self.motion_y_embed(motion[..., grid[1] :])  # (B, C', F, H')
        v = v_t[:, :, None] + v_x[..., None, :] + v_y[..., :, None]  # (B, C', F, H', W')
        return rearrange(v, "b d f h w -> b f (h w) d"), grid

    def decode(self, content: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """``content (B, C, H, W)``, ``motion (B, D, F, W' + H')`` -> clip ``(B, C, F, H, W)``."""
        tokens, grid = self._decoder_input(content, motion)
        y = self._per_frame_output(self.output_head, self.decoder(tokens, grid), grid)
        return 2 * torch.sigmoid(y) - 1 if self.output == "bounded" else y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x: (B, C, F, H, W)`` -> ``(recon (B, C, F, H, W), content (B, C, H, W), motion (B, D, F, W' + H'))``."""
        content, motion = self.encode(x)
        return self.decode(content, motion), content, motion
