"""SyntheticVideoDataset: determinism, ranges, splits, labels/captions and the geometry it renders."""

from __future__ import annotations

import math

import pytest
import torch

from vidgen.config.errors import ConfigError
from vidgen.data.synthetic import MOTION_PHRASES, MOTIONS, PALETTE, SHAPES, SyntheticVideoDataset


def centroids(video: torch.Tensor, background: tuple[int, int, int]) -> torch.Tensor:
    """``(F, 2)`` colour-mass centroid ``(x, y)`` of a ``(C, F, H, W)`` clip (mass = |pixel - background|)."""
    bg = torch.tensor(background, dtype=torch.float32).div(127.5).sub(1.0).view(3, 1, 1, 1)
    mass = (video - bg).abs().sum(dim=0)  # (F, H, W)
    h, w = mass.shape[-2:]
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    total = mass.sum(dim=(1, 2))
    return torch.stack([(mass * xs).sum(dim=(1, 2)) / total, (mass * ys).sum(dim=(1, 2)) / total], dim=1)


def test_same_seed_and_index_give_identical_clips() -> None:
    a = SyntheticVideoDataset(num_clips=20, seed=3)
    b = SyntheticVideoDataset(num_clips=20, seed=3)
    for i in (0, 7, 19):
        assert torch.equal(a[i]["video"], b[i]["video"])
        assert a[i]["caption"] == b[i]["caption"]
    assert not torch.equal(a[0]["video"], a[1]["video"])
    assert not torch.equal(a[0]["video"], SyntheticVideoDataset(num_clips=20, seed=4)[0]["video"])


@pytest.mark.parametrize(
    ("frames", "res", "channels"), [(1, 16, 3), (8, 32, 3), (5, 48, 1), (16, 64, 3), (3, 9, 3)]
)
def test_shapes_dtype_and_range(frames: int, res: int, channels: int) -> None:
    ds = SyntheticVideoDataset(
        num_clips=4, num_frames=frames, resolution=res, channels=channels, max_objects=2
    )
    for i in range(len(ds)):
        item = ds[i]
        video = item["video"]
        assert video.shape == (channels, frames, res, res)
        assert video.dtype == torch.float32
        assert video.min() >= -1.0 and video.max() <= 1.0
        assert video.max() > video.min() + 0.3  # an object is visible
        assert item["index"] == i
        assert isinstance(item["label"], int) and 0 <= item["label"] < ds.num_classes
        assert isinstance(item["caption"], str)


def test_index_out_of_range() -> None:
    ds = SyntheticVideoDataset(num_clips=3)
    with pytest.raises(IndexError):
        ds[3]
    assert len(list(iter(ds.__getitem__(i) for i in range(3)))) == 3


def test_train_and_val_do_not_share_clips() -> None:
    train = SyntheticVideoDataset(num_clips=300, split="train")
    val = SyntheticVideoDataset(num_clips=300, split="val")
    train_keys = {train[i]["video"].numpy().tobytes() for i in range(len(train))}
    val_keys = {val[i]["video"].numpy().tobytes() for i in range(len(val))}
    assert len(train_keys) == 300 and len(val_keys) == 300
    assert not train_keys & val_keys


def test_classes_labels_and_captions_match_describe() -> None:
    ds = SyntheticVideoDataset(num_clips=200, max_objects=3)
    assert ds.num_classes == len(SHAPES) * len(MOTIONS) == len(ds.class_names) == 21
    assert ds.class_names[0] == "square moving left"
    seen_counts = set()
    for i in range(len(ds)):
        spec, item = ds.describe(i), ds[i]
        primary = spec.primary
        assert item["label"] == spec.label == ds.label_of(primary.shape, primary.motion)
        assert ds.class_names[spec.label] == f"{primary.shape} {MOTION_PHRASES[primary.motion]}"
        expected = " and ".join(
            f"{'an' if o.color_name == 'orange' else 'a'} {o.color_name} {o.shape} {MOTION_PHRASES[o.motion]}"
            for o in spec.objects
        )
        assert item["caption"] == spec.caption == expected
        assert 1 <= len(spec.objects) <= 3
        assert len({o.color_name for o in spec.objects}) == len(spec.objects)  # distinct colours
        for obj in spec.objects:
            assert PALETTE[obj.color_name] == obj.color_rgb
            assert obj.positions.shape == (spec.num_frames, 2)
        seen_counts.add(len(spec.objects))
    assert seen_counts == {1, 2, 3}
    assert len({ds.describe(i).label for i in range(len(ds))}) > 15  # classes are all in use


def test_class_subsets() -> None:
    ds = SyntheticVideoDataset(num_clips=50, shapes=["circle"], motions=["up", "down"], colors=["red"])
    assert ds.class_names == ["circle moving up", "circle moving down"]
    for i in range(len(ds)):
        spec = ds.describe(i)
        assert spec.caption in ("a red circle moving up", "a red circle moving down")
        assert spec.label == ("circle moving up", "circle moving down").index(spec.caption[len("a red ") :])


def test_rendered_centroid_matches_described_positions() -> None:
    ds = SyntheticVideoDataset(num_clips=150, num_frames=8, resolution=32)
    for i in range(len(ds)):
        spec = ds.describe(i)
        measured = centroids(ds[i]["video"], spec.background_rgb)
        error = (measured - spec.primary.positions).abs().max().item()
        assert error < 0.5, (i, spec.primary.shape, error)


def test_later_objects_are_drawn_over_earlier_ones() -> None:
    ds = SyntheticVideoDataset(num_clips=60, max_objects=3, min_objects=2)
    for i in range(len(ds)):
        spec = ds.describe(i)
        top = spec.objects[-1]
        x, y = (round(v) for v in top.positions[0].tolist())
        pixel = ds[i]["video"][:, 0, y, x]
        expected = torch.tensor(top.color_rgb, dtype=torch.float32) / 127.5 - 1.0
        assert torch.allclose(pixel, expected, atol=1e-5)


def test_bouncing_objects_stay_inside_the_frame() -> None:
    res = 32
    ds = SyntheticVideoDataset(
        num_clips=80, num_frames=48, resolution=res, motions=["left", "right", "up", "down", "diagonal"]
    )
    bounced = 0
    for i in range(len(ds)):
        spec = ds.describe(i)
        video = ds[i]["video"]
        bg = torch.tensor(spec.background_rgb, dtype=torch.float32).div(127.5).sub(1.0).view(3, 1, 1, 1)
        mass = (video - bg).abs().sum(dim=0).sum(dim=(1, 2))  # (F,)
        # Nothing is cut off at the border: the object's colour mass is the same in every frame.
        assert (mass.max() - mass.min()) / mass.median() < 0.03, i
        pos = spec.primary.positions
        assert pos.min() >= 0 and pos.max() <= res - 1
        steps = pos[1:] - pos[:-1]
        bounced += int((steps[1:] * steps[:-1] < 0).any())  # a velocity component changed sign
    assert bounced > 60  # 48 frames at 1-2 px/frame must bounce


@pytest.mark.parametrize("motion", ["left", "right", "up", "down"])
def test_straight_motions_move_as_named(motion: str) -> None:
    axis, sign = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}[motion]
    ds = SyntheticVideoDataset(num_clips=30, num_frames=8, resolution=32, motions=[motion])
    for i in range(len(ds)):
        spec = ds.describe(i)
        assert motion in spec.caption
        c = centroids(ds[i]["video"], spec.background_rgb)
        steps = c[1:] - c[:-1]
        assert sign * steps[0, axis] > 0.8  # moves the named way from the first frame on
        assert (sign * steps[:, axis] > 0).all()  # and keeps going (room to cross 8 frames unbounced)
        assert steps[:, 1 - axis].abs().max() < 0.2
        speed = math.hypot(*spec.primary.velocity)
        assert 0.9 <= speed <= 2.0


def test_static_diagonal_and_circle_motions() -> None:
    static = SyntheticVideoDataset(num_clips=10, motions=["static"])
    for i in range(len(static)):
        video = static[i]["video"]
        assert torch.equal(video[:, 0], video[:, -1])
        assert "standing still" in static[i]["caption"]
    diagonal = SyntheticVideoDataset(num_clips=20, motions=["diagonal"])
    for i in range(len(diagonal)):
        spec = diagonal.describe(i)
        c = centroids(diagonal[i]["video"], spec.background_rgb)
        step = c[1] - c[0]
        assert step.abs().min() > 0.5
        assert abs(step[0].abs() - step[1].abs()) < 0.3
    circle = SyntheticVideoDataset(num_clips=20, num_frames=8, motions=["circle"])
    for i in range(len(circle)):
        pos = circle.describe(i).primary.positions.double()
        # Points lie on one circle: the circumcentre of the first three is equidistant from all.
        (ax, ay), (bx, by), (cx, cy) = pos[0].tolist(), pos[3].tolist(), pos[7].tolist()
        d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
        ux = ((ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)) / d
        uy = ((ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)) / d
        radii = (pos - torch.tensor([ux, uy], dtype=torch.float64)).norm(dim=1)
        assert (radii - radii.mean()).abs().max() < 1e-3
        assert radii.mean() > 2.0
        # clockwise on screen (y down): the cross product of successive steps is positive
        s = pos[1:] - pos[:-1]
        assert ((s[:-1, 0] * s[1:, 1] - s[:-1, 1] * s[1:, 0]) > 0).all()


def test_bad_values_raise_config_errors() -> None:
    cases = [
        ({"num_frames": 0}, "data.num_frames"),
        ({"resolution": 4}, "data.resolution"),
        ({"channels": 2}, "data.channels"),
        ({"split": "dev"}, "data.split"),
        ({"shapes": ["hexagon"]}, "data.shapes"),
        ({"motions": []}, "data.motions"),
        ({"colors": ["mauve"]}, "data.colors"),
        ({"object_size": [0.5, 0.3]}, "data.object_size"),
        ({"max_objects": 0}, "data.max_objects"),
    ]
    for kwargs, key in cases:
        with pytest.raises(ConfigError) as info:
            SyntheticVideoDataset(**kwargs)
        assert info.value.key == key and str(info.value).startswith(key)
