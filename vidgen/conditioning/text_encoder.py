"""The text tower of an open_clip CLIP model as a module that returns per-token states (a leaf module: the
text conditioner and the Hugging Face CLIP converter both build it)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OpenClipTextEncoder"]


class OpenClipTextEncoder(nn.Module):
    """The text tower of an open_clip CLIP model, returning per-token states (no pooling, no projection).

    Works for open_clip's ``CLIP`` (text tower inlined) and ``CustomTextCLIP`` with its own
    ``TextTransformer``, as long as the tower is a causal transformer without a class token (every CLIP /
    OpenCLIP text model is).
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        tower = getattr(clip_model, "text", clip_model)  # CustomTextCLIP keeps its tower in .text
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
        if not all(hasattr(tower, name) for name in needed):
            raise ValueError(f"{type(tower).__name__} is not an open_clip text transformer (needs {needed})")
        if getattr(tower, "cls_emb", None) is not None or tower.attn_mask is None:
            raise ValueError("the text tower must be causal without a class token (a CLIP text transformer)")
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.register_buffer("attn_mask", tower.attn_mask.clone(), persistent=False)

    @property
    def width(self) -> int:
        """Feature size of the per-token states (``text_dim``)."""
        return int(self.token_embedding.weight.shape[1])

    @property
    def context_length(self) -> int:
        return int(self.positional_embedding.shape[0])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens: (B, L)`` int64 ids with ``L <= context_length`` -> states ``(B, L, width)`` (after the
        final LayerNorm)."""
        length = tokens.shape[1]
        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(tokens).to(cast_dtype) + self.positional_embedding[:length].to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        return self.ln_final(x)
