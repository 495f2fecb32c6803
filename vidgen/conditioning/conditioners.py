"""Conditioners turn a data batch into the :class:`Cond` a denoiser receives, and drop conditions for
classifier-free guidance (the null condition replaces the real one with probability ``drop_prob``)."""

from __future__ import annotations

from typing import Any

import torch

from vidgen.conditioning.base import Conditioner
from vidgen.conditioning.cond import Cond
from vidgen.conditioning.text import TextConditioner
from vidgen.config.errors import ConfigError


class NoConditioner(Conditioner):
    """Unconditional generation: every condition is empty."""

    def forward(
        self, batch: dict[str, Any], train: bool = False, generator: torch.Generator | None = None
    ) -> Cond:
        return Cond()

    def null(self, n: int, device: torch.device | str = "cpu") -> Cond:
        return Cond()

    def for_sampling(
        self,
        n: int,
        device: torch.device | str = "cpu",
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
    ) -> Cond:
        if labels is not None or captions:
            raise ValueError("this model is unconditional: it takes no labels or captions")
        return Cond()


class ClassConditioner(Conditioner):
    """Class labels; the null class is index ``num_classes`` (the denoiser's table has ``num_classes+1`` rows).

    Args:
        num_classes: number of real classes (> 0).
        drop_prob: probability of replacing a label by the null class in training.
    """

    def __init__(self, num_classes: int, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.drop_prob = float(drop_prob)

    @property
    def null_index(self) -> int:
        return self.num_classes

    @property
    def supports_guidance(self) -> bool:
        return self.drop_prob > 0

    def forward(
        self, batch: dict[str, Any], train: bool = False, generator: torch.Generator | None = None
    ) -> Cond:
        """``batch["label"]: (B,)`` -> ``Cond(labels=(B,))``, with null-class dropout when ``train``.

        Image-video joint training: ``batch["image_labels"]: (B, K)``, the label of each appended image's
        own clip, becomes ``cond.images.labels`` with its own dropout (drawn after the clips').
        """
        if "label" not in batch:
            raise KeyError("class conditioning needs a 'label' in every batch; this dataset has no labels")
        cond = Cond(labels=self._dropped(self._checked(batch["label"], "label"), train, generator))
        if "image_labels" in batch:
            image_labels = self._checked(batch["image_labels"], "image_labels")
            if image_labels.dim() != 2 or image_labels.shape[0] != cond.labels.shape[0]:
                raise ValueError(
                    f"batch['image_labels'] must have shape (B, K) = ({cond.labels.shape[0]}, K), "
                    f"got {tuple(image_labels.shape)}"
                )
            cond.images = Cond(labels=self._dropped(image_labels, train, generator))
        return cond

    def _checked(self, labels: Any, key: str) -> torch.Tensor:
        labels = torch.as_tensor(labels).long()
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"batch['{key}'] must lie in [0, {self.num_classes}); got {labels.min()}..{labels.max()}"
            )
        return labels

    def _dropped(self, labels: torch.Tensor, train: bool, generator: torch.Generator | None) -> torch.Tensor:
        """Each label (any shape) replaced by the null class with probability ``drop_prob`` in training."""
        if not (train and self.drop_prob > 0):
            return labels
        drop = torch.rand(labels.shape, generator=generator) < self.drop_prob
        return torch.where(drop.to(labels.device), torch.full_like(labels, self.null_index), labels)

    def null(self, n: int, device: torch.device | str = "cpu") -> Cond:
        return Cond(labels=torch.full((n,), self.null_index, dtype=torch.long, device=device))

    def for_sampling(
        self,
        n: int,
        device: torch.device | str = "cpu",
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
    ) -> Cond:
        """Labels for ``n`` samples: the given ones, or classes cycled ``0, 1, 2, ...``."""
        if captions:
            raise ValueError("this model is class-conditional: give labels, not captions")
        if labels is None:
            labels = torch.arange(n) % self.num_classes
        labels = torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ValueError(f"expected {n} labels, got shape {tuple(labels.shape)}")
        return Cond(labels=labels.to(device))


CONDITIONER_KINDS = ("none", "class", "text")


def build_conditioner(
    kind: str,
    num_classes: int = 0,
    drop_prob: float = 0.0,
    text_dim: int = 0,
    path: str | None = None,
    model_name: str | None = None,
    max_length: int = 77,
    pad_token: str = "auto",
) -> Conditioner:
    """Build the conditioner named by ``conditioner.kind`` (the config node's keys are the arguments).

    ``text_dim`` is the width of the text states the denoiser receives (0 unless ``kind`` is ``text``);
    ``path``, ``model_name``, ``max_length`` and ``pad_token`` configure the text encoder (see
    :class:`~vidgen.conditioning.text.TextConditioner`).
    """
    if not 0.0 <= float(drop_prob) < 1.0:
        raise ConfigError("conditioner.drop_prob", f"must lie in [0, 1), got {drop_prob}")
    if kind != "text" and text_dim:
        raise ConfigError(
            "conditioner.text_dim", f"only text conditioning has text states; 0 for kind '{kind}'"
        )
    if kind == "none":
        if num_classes:
            raise ConfigError("conditioner.num_classes", "an unconditional model has num_classes 0")
        return NoConditioner()
    if kind == "class":
        if int(num_classes) <= 0:
            raise ConfigError(
                "conditioner.num_classes",
                f"class conditioning needs num_classes > 0, got {num_classes} (does the dataset have labels?)",
            )
        return ClassConditioner(num_classes, drop_prob)
    if kind == "text":
        if num_classes:
            raise ConfigError("conditioner.num_classes", "a text-conditional model has num_classes 0")
        if not path:
            raise ConfigError(
                "conditioner.path",
                "text conditioning needs a local open_clip checkpoint file or a Stable Diffusion folder",
            )
        if not model_name:
            raise ConfigError("conditioner.model_name", "text conditioning needs an open_clip architecture")
        if int(text_dim) <= 0:
            raise ConfigError("conditioner.text_dim", f"text conditioning needs text_dim > 0, got {text_dim}")
        return TextConditioner(path, model_name, text_dim, max_length, drop_prob, pad_token)
    raise ConfigError(
        "conditioner.kind", f"unknown kind '{kind}'; choose one of {', '.join(CONDITIONER_KINDS)}"
    )
