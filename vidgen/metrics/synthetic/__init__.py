"""In-domain evaluation for the built-in synthetic data, with no downloaded weights.

* :class:`SyntheticFVD` (``synthetic_fvd``): Frechet distance of features of a small video classifier that
  vidgen trains itself on the synthetic classes (:func:`train_synthetic_classifier`, cached on disk by
  :func:`load_or_train_classifier`).
* :class:`SyntheticClassAccuracy` (``class_accuracy``): how often generated clips are classified as the class
  they were generated for.
* :class:`SyntheticStructure` (``synthetic_structure``): object presence, palette colours and motion
  consistency measured against the generator's known structure (no learned weights).
* :class:`SyntheticLongClip` (``synthetic_long``): the same structure checks on windows of long clips, along
  the whole clip and across every block boundary of a block-wise extension, and colour constancy.
"""

from vidgen.metrics.synthetic.classifier import (
    CLASSIFIER_VERSION,
    SyntheticVideoClassifier,
    load_or_train_classifier,
    synthetic_clips,
    train_synthetic_classifier,
    videos_to_input,
)
from vidgen.metrics.synthetic.long_clips import SyntheticLongClip
from vidgen.metrics.synthetic.metrics import SyntheticClassAccuracy, SyntheticFVD, SyntheticStructure
from vidgen.metrics.synthetic.structure import StructureAnalyzer

__all__ = [
    "CLASSIFIER_VERSION",
    "StructureAnalyzer",
    "SyntheticClassAccuracy",
    "SyntheticFVD",
    "SyntheticLongClip",
    "SyntheticStructure",
    "SyntheticVideoClassifier",
    "load_or_train_classifier",
    "synthetic_clips",
    "train_synthetic_classifier",
    "videos_to_input",
]
