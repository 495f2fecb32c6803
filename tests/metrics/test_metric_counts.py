"""How many real / generated clips each metric's protocol asks for (VideoMetric.num_real_wanted /
num_fake_wanted, defined once in vidgen/metrics/base.py): its num_real / num_fake, and no real clips for the
metrics that score generated videos alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vidgen.metrics.base import VideoMetric
from vidgen.metrics.c3d import VideoIS
from vidgen.metrics.clipsim import CLIPSIM
from vidgen.metrics.fvd import FVD
from vidgen.metrics.inception import FrameFID, FrameIS
from vidgen.metrics.synthetic.metrics import SyntheticClassAccuracy, SyntheticFVD, SyntheticStructure

# (constructor with num_real = 7 where the metric takes it and num_fake = 5, needs real clips)
METRICS: list[tuple[Callable[[], VideoMetric], bool]] = [
    (lambda: FVD(num_real=7, num_fake=5), True),
    (lambda: FrameFID(num_real=7, num_fake=5), True),
    (lambda: SyntheticFVD(num_real=7, num_fake=5), True),
    (lambda: FrameIS(num_fake=5, splits=1), False),
    (lambda: CLIPSIM(num_fake=5), False),
    (lambda: VideoIS(num_fake=5), False),
    (lambda: SyntheticClassAccuracy(num_fake=5), False),
    (lambda: SyntheticStructure(num_fake=5), False),
]


@pytest.mark.parametrize(("make", "needs_real"), METRICS)
def test_each_metric_wants_its_own_counts(make: Callable[[], VideoMetric], needs_real: bool) -> None:
    metric = make()
    assert metric.needs_real is needs_real
    assert metric.num_fake_wanted == 5
    assert metric.num_real_wanted == (7 if needs_real else 0)


def test_defaults_are_the_protocols() -> None:
    assert (FVD().num_real_wanted, FVD().num_fake_wanted) == (2048, 2048)
    assert (CLIPSIM().num_real_wanted, CLIPSIM().num_fake_wanted) == (0, 2048)
