"""Text conditioning: a frozen open_clip (CLIP) text encoder giving per-token states for cross-attention.

The states are those of the text transformer after its final LayerNorm, before pooling and before the
projection into CLIP's joint image-text space (Stable Diffusion 1.x feeds exactly these, of CLIP ViT-L/14,
to its cross-attention). ``pooled_text`` is the state of the end-of-text (EOT) token, the token CLIP pools;
it is also taken before the projection, so every text tensor has the encoder's width ``text_dim``.

The CLIP text transformer is causal, so the state of a token depends only on the tokens before it: the
states up to and including EOT do not depend on the padding, and ``text_mask`` is True exactly there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidgen.conditioning.cond import Cond
from vidgen.conditioning.conditioners import Conditioner
from vidgen.config.errors import ConfigError

__all__ = ["NULL_CAPTION", "OpenClipTextEncoder", "TextConditioner"]

#: the caption of the null condition (classifier-free guidance): the empty caption
NULL_CAPTION = ""

#: distinct data captions remembered for sampling without explicit captions
_REMEMBERED_CAPTIONS = 64


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


class TextConditioner(Conditioner):
    """Captions -> per-token states of a frozen open_clip text encoder, with caption dropout.

    Args (the ``conditioner`` config keys):
        path: local open_clip checkpoint file (state dict) holding the CLIP model.
        model_name: open_clip architecture name, or a path to an open_clip model-config JSON.
        text_dim: width of the per-token states; must equal the encoder's.
        max_length: tokens per caption (context length, at most the encoder's; longer captions are cut,
            keeping the end-of-text token).
        drop_prob: probability of replacing a caption by the empty caption in training.

    Produces ``Cond(text (B, L, text_dim), text_mask (B, L) bool, pooled_text (B, text_dim))`` with
    ``L = max_length``, in the encoder's dtype (float32 unless the module was converted). The null
    condition is the encoder's output for the empty caption ``""``, computed once and kept as
    (non-persistent) buffers, so it moves with the module and is bit-identical wherever it is used: a
    dropped caption gets exactly these states.

    Sampling without captions (``for_sampling(n)``, as the validation samples are made): the distinct
    captions of the data batches this conditioner has seen (the first 64) are used in turn; before any
    batch was seen, captions must be given.

    The encoder is frozen (``requires_grad`` off) and stays in eval mode even when the LightningModule is
    put in training mode; since it has no trainable parameter, the
    :class:`~vidgen.lit.module.VideoDiffusionModule` leaves its weights out of training checkpoints (they
    are read from ``path`` again when a checkpoint is loaded).
    """

    def __init__(
        self,
        path: str | Path,
        model_name: str,
        text_dim: int,
        max_length: int = 77,
        drop_prob: float = 0.1,
    ) -> None:
        super().__init__()
        from vidgen.conditioning.open_clip_loader import OpenClipError, create_open_clip

        self.drop_prob = float(drop_prob)
        checkpoint = Path(str(path)).expanduser()
        if not checkpoint.is_file():
            raise ConfigError(
                "conditioner.path",
                f"text encoder checkpoint '{checkpoint}' does not exist. conditioner.path must name a local "
                f"open_clip checkpoint (state dict) of architecture '{model_name}' (conditioner.model_name); "
                "nothing is downloaded",
            )
        try:
            loaded = create_open_clip(model_name, checkpoint, who="conditioner")
        except OpenClipError as error:
            key = "conditioner.path" if error.field == "checkpoint" else "conditioner.model_name"
            raise ConfigError(key, str(error)) from None
        try:
            self.encoder = OpenClipTextEncoder(loaded.model).requires_grad_(False).eval()
        except ValueError as error:
            raise ConfigError("conditioner.model_name", f"'{model_name}': {error}") from None
        self.tokenizer = loaded.tokenizer
        self.eot_token_id = int(self.tokenizer.eot_token_id)
        del loaded  # the image tower is not needed
        self.model_name = str(model_name)
        self.text_dim = self.encoder.width
        if int(text_dim) != self.text_dim:
            raise ConfigError(
                "conditioner.text_dim",
                f"the text encoder '{model_name}' gives {self.text_dim}-d token states; set text_dim to "
                f"{self.text_dim} (got {text_dim})",
            )
        context = self.encoder.context_length
        if not 2 <= int(max_length) <= context:
            raise ConfigError(
                "conditioner.max_length", f"must lie in [2, {context}] for '{model_name}', got {max_length}"
            )
        self.max_length = int(max_length)
        text, mask, pooled = self.encode([NULL_CAPTION])
        self.register_buffer("null_text", text, persistent=False)  # (1, L, D)
        self.register_buffer("null_mask", mask, persistent=False)  # (1, L)
        self.register_buffer("null_pooled", pooled, persistent=False)  # (1, D)
        self.remembered_captions: list[str] = []

    @property
    def supports_guidance(self) -> bool:
        return self.drop_prob > 0

    def train(self, mode: bool = True) -> TextConditioner:
        """The frozen encoder always stays in eval mode."""
        super().train(mode)
        self.encoder.eval()
        return self

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``B`` captions -> ``states (B, L, D)`` in the encoder's dtype, ``mask (B, L)`` bool (True up to and
        including the end-of-text token), ``pooled (B, D)`` (the end-of-text token's state); on the encoder's
        device."""
        device = self.encoder.attn_mask.device
        tokens = self.tokenizer(list(captions), context_length=self.max_length).to(device)
        states = self.encoder(tokens).to(self.encoder.token_embedding.weight.dtype)  # not autocast's
        eot = (tokens == self.eot_token_id).int().argmax(dim=1)  # (B,) first end-of-text position
        mask = torch.arange(tokens.shape[1], device=device)[None] <= eot[:, None]
        pooled = states[torch.arange(tokens.shape[0], device=device), eot]
        return states, mask, pooled

    def _captions(self, batch: dict[str, Any]) -> list[str]:
        if "caption" not in batch:
            raise KeyError(
                "text conditioning (conditioner.kind=text) needs a 'caption' (one string per clip) in every "
                "batch; this dataset gives none"
            )
        captions = batch["caption"]
        captions = [captions] if isinstance(captions, str) else list(captions)
        if not all(isinstance(c, str) for c in captions):
            raise TypeError(f"batch['caption'] must hold strings, got {[type(c).__name__ for c in captions]}")
        video = batch.get("video")
        if video is not None and len(captions) != video.shape[0]:
            raise ValueError(f"{len(captions)} captions for a batch of {video.shape[0]} videos")
        return captions

    def _remember(self, captions: list[str]) -> None:
        for caption in captions:
            if len(self.remembered_captions) >= _REMEMBERED_CAPTIONS:
                return
            if caption not in self.remembered_captions:
                self.remembered_captions.append(caption)

    def _cond(self, text: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> Cond:
        return Cond(text=text, text_mask=mask, pooled_text=pooled)

    def forward(
        self, batch: dict[str, Any], train: bool = False, generator: torch.Generator | None = None
    ) -> Cond:
        """``batch["caption"]``: ``B`` strings -> text condition; in training each caption is replaced by
        the empty caption with probability ``drop_prob`` (its states are then exactly :meth:`null`'s)."""
        captions = self._captions(batch)
        self._remember(captions)
        text, mask, pooled = self.encode(captions)
        if train and self.drop_prob > 0:
            drop = (torch.rand(len(captions), generator=generator) < self.drop_prob).to(text.device)
            text = torch.where(drop[:, None, None], self.null_text, text)
            mask = torch.where(drop[:, None], self.null_mask, mask)
            pooled = torch.where(drop[:, None], self.null_pooled, pooled)
        return self._cond(text, mask, pooled)

    def null(self, n: int, device: torch.device | str = "cpu") -> Cond:
        """The empty caption's states for ``n`` samples."""
        return self._cond(
            self.null_text.repeat(n, 1, 1).to(device),
            self.null_mask.repeat(n, 1).to(device),
            self.null_pooled.repeat(n, 1).to(device),
        )

    def for_sampling(
        self,
        n: int,
        device: torch.device | str = "cpu",
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
    ) -> Cond:
        """The condition for ``n`` generated videos: the given captions, or (when None) the remembered data
        captions in turn."""
        if labels is not None:
            raise ValueError("this model is text-conditional: give captions, not labels")
        if captions is None:
            if not self.remembered_captions:
                raise ValueError(
                    "a text-conditional model needs captions to sample: pass captions (one string per video)"
                )
            captions = [self.remembered_captions[i % len(self.remembered_captions)] for i in range(n)]
        captions = [captions] if isinstance(captions, str) else list(captions)
        if len(captions) != n or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"expected {n} caption strings, got {len(captions)}")
        text, mask, pooled = self.encode(captions)
        return self._cond(text, mask, pooled).to(device)
