"""Conditioners (null class, dropout rate), EMA arithmetic and per-step seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vidgen.conditioning import Cond, build_conditioner
from vidgen.config.errors import ConfigError
from vidgen.lit.ema import ema_decay_at, ema_update, make_ema_copy
from vidgen.lit.seeding import mix_seed, step_generator


def test_class_conditioner_dropout_rate_and_null_class() -> None:
    conditioner = build_conditioner("class", num_classes=5, drop_prob=0.25)
    labels = torch.randint(0, 5, (20000,), generator=torch.Generator().manual_seed(0))
    cond = conditioner({"label": labels}, train=True, generator=torch.Generator().manual_seed(1))
    dropped = cond.labels == 5
    assert abs(dropped.float().mean().item() - 0.25) < 0.015
    assert torch.equal(cond.labels[~dropped], labels[~dropped])  # kept labels are untouched
    # no dropout outside training; the null condition is the extra class
    assert torch.equal(conditioner({"label": labels}, train=False).labels, labels)
    assert torch.equal(conditioner.null(3).labels, torch.tensor([5, 5, 5]))
    assert torch.equal(conditioner.for_sampling(7).labels, torch.tensor([0, 1, 2, 3, 4, 0, 1]))
    with pytest.raises(ValueError):
        conditioner({"label": torch.tensor([5])})


def test_conditioner_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"conditioner.num_classes"):
        build_conditioner("class", num_classes=0, drop_prob=0.1)
    with pytest.raises(ConfigError, match=r"conditioner.kind"):
        build_conditioner("text?", num_classes=0)
    assert build_conditioner("none")({"label": torch.tensor([1])}).is_empty


def test_cond_cat_select_repeat() -> None:
    a, b = Cond(labels=torch.tensor([1, 2])), Cond(labels=torch.tensor([9, 9]))
    assert torch.equal(a.cat(b).labels, torch.tensor([1, 2, 9, 9]))
    assert torch.equal(a.repeat(2).labels, torch.tensor([1, 2, 1, 2]))
    assert torch.equal(a.cat(b).select(slice(1, 3)).labels, torch.tensor([2, 9]))


def test_cond_num_video_frames_is_kept_and_not_a_tensor() -> None:
    a = Cond(labels=torch.tensor([1, 2]), num_video_frames=16)
    assert set(a._tensors()) == {"labels"}
    for derived in (a.to("cpu"), a.repeat(2), a.select(slice(0, 1)), a.cat(a)):
        assert derived.num_video_frames == 16
    assert Cond(num_video_frames=16).is_empty  # no tensor: conditions on nothing
    with pytest.raises(ValueError, match="num_video_frames"):
        a.cat(Cond(labels=torch.tensor([3])))


def test_ema_update_is_the_exponential_average() -> None:
    model = nn.Linear(3, 2)
    ema = make_ema_copy(model)
    start = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema_update(ema, model, decay=0.9)
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(value, 0.9 * start[key] + 0.1 * model.state_dict()[key])
    assert not any(p.requires_grad for p in ema.parameters())
    assert ema_decay_at(0, 0.999, warmup=True) == pytest.approx(0.1)
    assert ema_decay_at(10**6, 0.999, warmup=True) == 0.999 and ema_decay_at(0, 0.999, warmup=False) == 0.999


def test_step_generators_are_reproducible_and_distinct() -> None:
    draw = lambda *a: torch.randn(4, generator=step_generator(*a))  # noqa: E731
    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6)) and not torch.equal(draw(0, 5), draw(0, 5, 1))
    assert len({mix_seed(s, k) for s in range(10) for k in range(100)}) == 1000
