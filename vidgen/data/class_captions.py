"""Captions made from class names (``data.class_captions``): a class-labelled folder dataset for text models.

Text-to-video models trained on UCF101 are conditioned on a prompt made from the clip's class, e.g.
``ApplyEyeMakeup`` -> ``"apply eye makeup"`` (the protocol Latent-Shift's U-Net needs there: it takes text
only). :class:`ClassCaptions` adds that ``caption`` to every item of a dataset that gives ``label``; the
label stays, so class-conditional models read the same data.
"""

from __future__ import annotations

import re
from typing import Any

from torch.utils.data import Dataset

from vidgen.config.errors import ConfigError

__all__ = ["ClassCaptions", "checked_template", "class_prompt"]

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])")


def checked_template(template: Any, key: str = "data.class_captions") -> str:
    """``template`` if it is a string holding ``{name}`` (the class's words), else a ConfigError naming
    ``key``."""
    if not isinstance(template, str) or "{name}" not in template:
        raise ConfigError(
            key, f"must be a prompt holding {{name}}, e.g. 'a video of {{name}}', got {template!r}"
        )
    try:
        template.format(name="x")
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            key, f"{template!r} is not a valid prompt: only {{name}} may be filled in"
        ) from error
    return template


def class_prompt(name: str, template: str = "{name}") -> str:
    """The prompt of class ``name``: its words, lower-case (CamelCase, ``_`` and ``-`` split), in
    ``template``; ``"ApplyEyeMakeup"`` -> ``"apply eye makeup"``, ``"YoYo"`` -> ``"yo yo"``."""
    words = _WORD_BOUNDARY.sub(" ", name).replace("_", " ").replace("-", " ")
    return template.format(name=" ".join(words.lower().split()))


class ClassCaptions(Dataset):
    """``dataset``'s items with ``caption``: the prompt of their ``label`` (:func:`class_prompt`).

    Every other attribute (``class_names``, ``labels``, ``set_epoch``, the bad-video counts, ...) is the
    wrapped dataset's.

    Args:
        dataset: items ``{"label": int, ...}``, with ``class_names`` (label ``i`` is ``class_names[i]``).
        template: the prompt, holding ``{name}``.
    """

    def __init__(self, dataset: Any, template: str) -> None:
        self.dataset = dataset
        self.template = checked_template(template)
        self.captions = [class_prompt(name, self.template) for name in dataset.class_names]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item["caption"] = self.captions[int(item["label"])]
        return item

    def condition_of(self, index: int) -> dict[str, Any]:
        """The wrapped dataset's condition of video ``index`` plus its caption."""
        condition = dict(self.dataset.condition_of(index))
        condition["caption"] = self.captions[int(condition["label"])]
        return condition

    def caption_of(self, index: int) -> str:
        """The caption of video ``index`` (its class's prompt), without decoding."""
        return self.captions[int(self.dataset.labels[int(index)])]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.dataset, name)
