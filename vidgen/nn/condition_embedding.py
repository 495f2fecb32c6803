"""Conditioning vectors of a U-Net that adds one embedding into every residual block (VDM's 3D U-Net).

- :class:`FourierMLP`: a scalar per sample (the integer step of a discrete schedule, or the log-SNR
  ``lambda_t``, a float in ``[-20, 20]``, of a continuous one) -> sinusoidal features
  (:func:`~vidgen.nn.embeddings.timestep_embedding`, ADM's frequencies) -> ``L`` Linear layers with SiLU
  between them. The features are defined for any real input, so one network serves both conventions.
  Parameters ``f E + E + (L - 1)(E^2 + E)`` (``f`` features, width ``E``).
- :class:`AttentionPool`: per-token text states ``(B, L, D)`` with their padding mask -> one vector, by a
  learned query attending over the tokens (multi-head), projected to the embedding width (VDM's "attention
  pooling" of BERT token embeddings). Parameters ``D`` (query) ``+ 3D^2 + 3D`` (q, kv) ``+ D E + E``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.nn.embeddings import timestep_embedding

__all__ = ["AttentionPool", "FourierMLP"]


class FourierMLP(nn.Module):
    """Scalars -> sinusoidal features -> an MLP of ``num_layers`` Linear layers (SiLU between them).

    Args:
        frequency_dim: number of sinusoidal features ``f`` (``[cos, sin]`` of ``f/2`` frequencies).
        emb_dim: output width ``E`` (the width of every layer).
        num_layers: ``L >= 1`` Linear layers.
    """

    def __init__(self, frequency_dim: int, emb_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the embedding MLP needs at least one layer, got {num_layers}")
        self.frequency_dim = frequency_dim
        layers: list[nn.Module] = [nn.Linear(frequency_dim, emb_dim)]
        for _ in range(num_layers - 1):
            layers += [nn.SiLU(), nn.Linear(emb_dim, emb_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t: (B,)`` int or float -> ``(B, E)`` in the dtype of the MLP's weights."""
        features = timestep_embedding(t, self.frequency_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(features)


class AttentionPool(nn.Module):
    """Pool text states into one vector with a learned query (see the module docstring).

    Args:
        dim: width ``D`` of the text states.
        out_dim: width ``E`` of the pooled vector.
        num_heads: heads (``D`` divisible by it).
    """

    def __init__(self, dim: int, out_dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"text width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.query = nn.Parameter(torch.randn(dim) * dim**-0.5)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pool.

        Args:
            states: ``(B, L, D)`` per-token text states.
            mask: ``(B, L)`` bool, True = real token, or None (all real). A sample without a real token
                pools to zero (then projected: the output's bias).

        Returns:
            ``(B, E)``.
        """
        query = self.q(self.query.to(states.dtype)).expand(states.shape[0], 1, -1)  # (B, 1, D)
        q = rearrange(query, "b one (h d) -> b h one d", h=self.num_heads)
        k, v = rearrange(self.kv(states), "b l (two h d) -> two b h l d", two=2, h=self.num_heads)
        attn_mask, empty = None, None
        if mask is not None:
            mask = mask.to(torch.bool)
            empty = ~mask.any(dim=-1)  # (B,)
            attn_mask = (mask | empty[:, None])[:, None, None, :]  # (B, 1, 1, L)
        pooled = rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask), "b h 1 d -> b (h d)")
        if empty is not None:
            pooled = pooled.masked_fill(empty[:, None], 0.0)
        return self.proj(pooled)
