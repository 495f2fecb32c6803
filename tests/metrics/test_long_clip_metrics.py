"""``synthetic_long``: window, boundary and colour consistency of long clips made block by block.

Real long synthetic clips score 1; joining blocks of unrelated clips, or looping one block, is caught at the
block boundaries even though every block on its own is a perfect synthetic clip."""

from __future__ import annotations

import pytest
import torch

from vidgen.data.synthetic import SyntheticVideoDataset
from vidgen.io.video import video_to_uint8
from vidgen.metrics.synthetic.long_clips import SyntheticLongClip, block_boundaries

N = 12


def _clips(num_frames: int, seed: int, count: int = N) -> torch.Tensor:
    dataset = SyntheticVideoDataset(num_clips=count, num_frames=num_frames, resolution=16, seed=seed)
    return torch.stack([video_to_uint8(dataset[i]["video"]) for i in range(count)])  # (N, F, H, W, 3)


def _scores(videos: torch.Tensor, context: int = 4) -> dict[str, float]:
    metric = SyntheticLongClip(window=8, window_stride=4, block_frames=8, context_frames=context)
    metric.update_fake(videos)
    return {k.split("/")[1]: v for k, v in metric.compute().items()}


def test_block_boundaries_and_windows() -> None:
    assert block_boundaries(32, 8, 4) == [8, 12, 16, 20, 24, 28]
    assert block_boundaries(32, 8, 0) == [8, 16, 24]
    with pytest.raises(ValueError, match="context_frames"):
        block_boundaries(32, 8, 8)
    metric = SyntheticLongClip(window=8, window_stride=6, block_frames=8, context_frames=4)
    assert metric.windows(20) == [0, 6, 12]  # the last window ends at the clip's end
    assert metric.boundary_windows(16) == [4, 8]  # centred on frames 8 and 12
    with pytest.raises(ValueError, match="shorter than window"):
        metric.windows(6)


def test_real_long_clips_score_one() -> None:
    scores = _scores(_clips(32, seed=3))
    for key in (
        "object_presence",
        "colour_constancy",
        "window_motion_consistency",
        "boundary_motion_consistency",
    ):
        assert scores[key] == pytest.approx(1.0), key
    assert scores["boundary_motion_residual_px"] < 0.05


def test_joins_of_unrelated_blocks_and_loops_fail_at_the_boundaries() -> None:
    long, short = _clips(32, seed=3), _clips(8, seed=5, count=N * 6)
    # the first block, then 6 blocks of 4 new frames each taken from another clip: every block is real
    joined = torch.stack(
        [torch.cat([long[i, :8], *(short[i * 6 + k, 4:8] for k in range(6))]) for i in range(N)]
    )
    scores = _scores(joined)
    assert scores["boundary_motion_consistency"] < 0.2 and scores["colour_constancy"] < 0.6
    assert scores["object_presence"] == pytest.approx(1.0)  # each frame alone is perfect
    looped = torch.cat([long[:, :8]] * 4, dim=1)  # the same block again: the object jumps back
    scores = _scores(looped, context=0)
    assert scores["boundary_motion_consistency"] < 0.5 and scores["colour_constancy"] == pytest.approx(1.0)
