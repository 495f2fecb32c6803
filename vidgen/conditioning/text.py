"""Text conditioning: a frozen open_clip (CLIP) text encoder giving per-token states for cross-attention.

The states are those of the text transformer after its final LayerNorm, before pooling and before the
projection into CLIP's joint image-text space (Stable Diffusion 1.x feeds exactly these, of CLIP ViT-L/14,
to its cross-attention). ``pooled_text`` is the state of the end-of-text (EOT) token, the token CLIP pools;
it is also taken before the projection, so every text tensor has the encoder's width ``text_dim``.

The CLIP text transformer is causal, so the state of a token depends only on the tokens before it: the
states up to and including EOT do not depend on the padding, and ``text_mask`` is True exactly there.

Where the weights come from (``conditioner.path``): an open_clip checkpoint file (a state dict of the whole
CLIP model), or a Stable Diffusion folder / its ``text_encoder/`` (a Hugging Face ``CLIPTextModel``, renamed
to open_clip's layout by :mod:`vidgen.conditioning.hf_clip`; only the text tower is built).

Padding (``pad_token``): open_clip's tokenizer pads with 0, Stable Diffusion 1.x's tokenizer with the
end-of-text token. The states after the first EOT depend on it, and Stable Diffusion's U-Net cross-attends to
all of them (its pipelines pass no mask), so ``auto`` pads as the weights' own tokenizer did: with the pad
token a Stable Diffusion folder's ``tokenizer/`` declares (EOT for SD 1.x; EOT when a bare ``text_encoder/``
is given), with 0 for an open_clip checkpoint. ``eot`` / ``zero`` force one. ``text_mask`` and
``pooled_text`` do not depend on the padding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vidgen.conditioning.base import Conditioner
from vidgen.conditioning.cond import Cond
from vidgen.conditioning.hf_clip import load_hf_clip_text
from vidgen.conditioning.open_clip_loader import OpenClipError, create_open_clip
from vidgen.conditioning.text_encoder import OpenClipTextEncoder
from vidgen.config.errors import ConfigError

__all__ = ["NULL_CAPTION", "PAD_TOKENS", "TextConditioner"]

#: the caption of the null condition (classifier-free guidance): the empty caption
NULL_CAPTION = ""

#: values of ``conditioner.pad_token`` (see the module docstring)
PAD_TOKENS = ("auto", "eot", "zero")

#: distinct data captions remembered for sampling without explicit captions
_REMEMBERED_CAPTIONS = 64


class TextConditioner(Conditioner):
    """Captions -> per-token states of a frozen open_clip text encoder, with caption dropout.

    Args (the ``conditioner`` config keys):
        path: local open_clip checkpoint file (state dict) holding the CLIP model, or a Stable Diffusion
            folder (its ``text_encoder/`` is read) or a Hugging Face ``CLIPTextModel`` folder.
        model_name: open_clip architecture name, or a path to an open_clip model-config JSON.
        text_dim: width of the per-token states; must equal the encoder's.
        max_length: tokens per caption (context length, at most the encoder's; longer captions are cut,
            keeping the end-of-text token).
        drop_prob: probability of replacing a caption by the empty caption in training.
        pad_token: ``auto``, ``eot`` or ``zero``: the token after the end-of-text token (see the module
            docstring); ``pad_token_id`` is the id used.

    ``source`` says where the weights came from: ``open_clip`` (a checkpoint file; the whole CLIP model was
    loaded, only its text tower is kept) or ``hf_clip`` (a ``CLIPTextModel``: exactly the text tower's
    weights were loaded; ``ignored_weights`` lists the file's tensors not used).

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
        pad_token: str = "auto",
    ) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)
        if pad_token not in PAD_TOKENS:
            raise ConfigError(
                "conditioner.pad_token", f"must be one of {', '.join(PAD_TOKENS)}, got {pad_token!r}"
            )
        checkpoint = Path(str(path)).expanduser()
        declared_pad: int | None = None
        self.ignored_weights: list[str] = []
        if checkpoint.is_dir():
            hf = load_hf_clip_text(checkpoint, model_name)  # raises ConfigError naming the key
            self.encoder, self.tokenizer = hf.encoder, hf.tokenizer
            self.source, self.ignored_weights = "hf_clip", hf.ignored
            declared_pad = hf.pad_token_id
        elif checkpoint.is_file():
            try:
                loaded = create_open_clip(model_name, checkpoint, who="conditioner")
            except OpenClipError as error:
                key = "conditioner.path" if error.field == "checkpoint" else "conditioner.model_name"
                hint = ""
                if error.field == "checkpoint" and (checkpoint.parent / "config.json").is_file():
                    hint = (
                        f"; for a Hugging Face CLIPTextModel (Stable Diffusion's text_encoder/) give its folder "
                        f"'{checkpoint.parent}'"
                    )
                raise ConfigError(key, f"{error}{hint}") from None
            try:
                self.encoder = OpenClipTextEncoder(loaded.model).requires_grad_(False).eval()
            except ValueError as error:
                raise ConfigError("conditioner.model_name", f"'{model_name}': {error}") from None
            self.tokenizer = loaded.tokenizer
            self.source = "open_clip"
            del loaded  # the image tower is not needed
        else:
            raise ConfigError(
                "conditioner.path",
                f"text encoder checkpoint '{checkpoint}' does not exist. conditioner.path must name a local "
                f"open_clip checkpoint (state dict) of architecture '{model_name}' (conditioner.model_name), or "
                "a Stable Diffusion folder (text_encoder/ + tokenizer/) or CLIPTextModel folder; nothing is "
                "downloaded",
            )
        self.eot_token_id = int(self.tokenizer.eot_token_id)
        if pad_token == "eot":
            self.pad_token_id = self.eot_token_id
        elif pad_token == "zero":
            self.pad_token_id = 0
        elif declared_pad is not None:  # auto, as the Stable Diffusion folder's tokenizer pads
            self.pad_token_id = int(declared_pad)
        else:  # auto: SD 1.x's tokenizer for a bare text_encoder/, open_clip's for an open_clip checkpoint
            self.pad_token_id = self.eot_token_id if self.source == "hf_clip" else 0
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
        eot = (tokens == self.eot_token_id).int().argmax(dim=1)  # (B,) first end-of-text position
        mask = torch.arange(tokens.shape[1], device=device)[None] <= eot[:, None]
        if self.pad_token_id != 0:  # open_clip's tokenizer pads with 0
            tokens = tokens.masked_fill(~mask, self.pad_token_id)
        states = self.encoder(tokens).to(self.encoder.token_embedding.weight.dtype)  # not autocast's
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
        the empty caption with probability ``drop_prob`` (its states are then exactly :meth:`null`'s).

        Image-video joint training: ``batch["image_captions"]``, the caption of each appended image's own
        clip as the default collate lays out per-item lists of ``K`` strings (``K`` sequences of ``B``
        strings), becomes ``cond.images`` (``text (B, K, L, D)``, ...) with its own dropout (drawn after
        the clips').
        """
        captions = self._captions(batch)
        self._remember(captions)
        cond = self._cond(*self._dropped(*self._states(batch, captions), train, generator))
        if "image_captions" in batch:
            per_image = self._image_captions(batch["image_captions"], len(captions))  # B lists of K
            num_images = len(per_image[0])
            flat = [caption for row in per_image for caption in row]
            states = self._dropped(*self.encode(flat), train, generator)
            text, mask, pooled = (v.unflatten(0, (len(captions), num_images)) for v in states)
            cond.images = self._cond(text, mask, pooled)
        return cond

    def _states(
        self, batch: dict[str, Any], captions: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The captions' ``(text (B, L, D), mask (B, L), pooled (B, D))``: a precomputed cache's (``data.cache``
        batches carry ``text`` / ``text_mask`` / ``pooled_text``, encoded by this encoder), else encoded now."""
        if "text" not in batch:
            return self.encode(captions)
        device = self.null_text.device
        text, mask, pooled = (batch[k].to(device) for k in ("text", "text_mask", "pooled_text"))
        if tuple(text.shape[1:]) != tuple(self.null_text.shape[1:]):
            raise ValueError(
                f"cached text states of shape {tuple(text.shape[1:])} but this encoder gives "
                f"{tuple(self.null_text.shape[1:])} per caption"
            )
        return text.to(self.null_text.dtype), mask.bool(), pooled.to(self.null_pooled.dtype)

    @staticmethod
    def _image_captions(collated: Any, batch_size: int) -> list[list[str]]:
        """``K`` sequences of ``B`` strings (the collated layout) -> ``B`` lists of ``K`` strings."""
        columns = [list(column) for column in collated]
        if not columns or any(len(column) != batch_size for column in columns):
            raise ValueError(
                f"batch['image_captions'] must hold K >= 1 sequences of {batch_size} strings (one per clip), "
                f"got lengths {[len(column) for column in columns]}"
            )
        if not all(isinstance(c, str) for column in columns for c in column):
            raise TypeError("batch['image_captions'] must hold strings")
        return [list(row) for row in zip(*columns)]

    def _dropped(
        self,
        text: torch.Tensor,
        mask: torch.Tensor,
        pooled: torch.Tensor,
        train: bool,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each of the ``N`` captions' states replaced by the empty caption's with probability ``drop_prob``
        in training (``text (N, L, D)``, ``mask (N, L)``, ``pooled (N, D)``)."""
        if not (train and self.drop_prob > 0):
            return text, mask, pooled
        drop = (torch.rand(text.shape[0], generator=generator) < self.drop_prob).to(text.device)
        text = torch.where(drop[:, None, None], self.null_text, text)
        mask = torch.where(drop[:, None], self.null_mask, mask)
        pooled = torch.where(drop[:, None], self.null_pooled, pooled)
        return text, mask, pooled

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
