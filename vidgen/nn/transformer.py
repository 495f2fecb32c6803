"""The adaLN-Zero transformer block shared by spatial and temporal use."""

from __future__ import annotations

import torch
from einops import pack, unpack
from torch import nn

from vidgen.nn.adaln import AdaLNModulation, modulate
from vidgen.nn.attention import Attention
from vidgen.nn.mlp import Mlp


class TransformerBlock(nn.Module):
    """Pre-LN self-attention + MLP, both modulated and gated by the conditioning vector (DiT's adaLN-Zero).

    ``SiLU -> Linear(h, 6h)`` on ``c`` gives shift/scale/gate for the attention and for the MLP sub-layer;
    zero-initialised, so the block starts as the identity.

    The block is agnostic about what a sequence is: it attends over the second-to-last axis of its
    ``(B, *groups, L, h)`` input, each group separately. A spatial block receives ``(B, F, h*w, D)`` (one
    sequence per frame), a temporal block ``(B, h*w, F, D)`` (one sequence per spatial position). The 6h
    modulation is computed once per sample and broadcast over the groups.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = AdaLNModulation(hidden_size, 6)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, *groups, L, D)`` tokens; attention runs over ``L`` within each group.
            c: ``(B, D)`` conditioning vector (timestep + class embedding).
            attn_mask: optional, broadcastable to ``(B * prod(groups), heads, L, L)``
                (see :class:`~vidgen.nn.attention.Attention`).

        Returns:
            ``(B, *groups, L, D)``.
        """
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(
            c, token_dims=x.dim() - 2
        )
        h = modulate(self.norm1(x), shift_msa, scale_msa)
        seqs, packed_shape = pack([h], "* l d")  # every group becomes one sequence: (B*groups, L, D)
        [h] = unpack(self.attn(seqs, attn_mask), packed_shape, "* l d")
        x = x + gate_msa * h
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
