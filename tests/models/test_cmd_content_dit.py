"""CMD's content-frame model = Latte variant 0 (DiT: every block spatial): the release's ContentDiT-L/2
parameter count (spec test 12, last row), frames never mixing, and non-square images ``(B, C, 1, H, W)``."""

from __future__ import annotations

import torch

from tests.models.latte_helpers import randomize_zero_init, tiny_latte, video
from vidgen.conditioning import Cond
from vidgen.models import BlockRole, Latte, block_layout
from vidgen.nn import sincos_2d_table


def test_variant0_is_all_spatial():
    assert block_layout(0, 3) == [BlockRole.SPATIAL] * 3
    model = tiny_latte(variant=0, depth=3)
    assert model.first_temporal_block is None
    assert all(b.role is BlockRole.SPATIAL for b in model.blocks)


def test_content_dit_l2_parameter_count_matches_the_release():
    # ContentDiT-L/2 exactly as NVlabs/CMD builds it: 3 x 64 x 64 pixels, patch 2, learned sigma, UCF's 101
    # classes (+ the null row). The release's 457,956,376 counts DiT's frozen 2D sin-cos table, an
    # nn.Parameter(requires_grad=False) of (64/2)^2 = 1024 tokens x 1024 = 1,048,576 entries; vidgen keeps
    # its tables (that one and the 1-frame temporal table, which DiT does not have) as buffers, so every
    # vidgen parameter is trainable and the release's figure is ours + 1024 * 1024.
    with torch.device("meta"):
        model = Latte(
            size="L",
            variant=0,
            patch_size=2,
            in_channels=3,
            input_size=64,
            num_frames=1,
            learn_sigma=True,
            num_classes=101,
        )
    assert model.num_params() == model.num_params(trainable_only=False) == 456_907_800
    assert tuple(model.pos_embed.shape) == (1024, 1024)
    assert model.num_params() + model.pos_embed.numel() == 457_956_376
    h = 1024  # outside the blocks: x / t / y embedders and final layer; 24 blocks of 18h^2 + 15h
    outside = (4 * 3 * h + h) + (256 * h + h + h * h + h) + 102 * h + (2 * h * h + 2 * h + 4 * 6 * (h + 1))
    assert model.num_params() == outside + 24 * (18 * h * h + 15 * h)


def test_frames_never_mix():
    # an image model: each frame's output is the model applied to that frame alone
    model = tiny_latte(variant=0, num_classes=3)
    randomize_zero_init(model)
    x, t, labels = video(), torch.tensor([3, 600]), torch.tensor([0, 3])
    out = model(x, t, Cond(labels=labels))
    for f in range(x.shape[2]):
        alone = model(x[:, :, f : f + 1], t, Cond(labels=labels))
        torch.testing.assert_close(out[:, :, f : f + 1], alone, rtol=0, atol=1e-12)


def test_non_square_image():
    model = tiny_latte(variant=0, num_frames=1, num_classes=3)
    randomize_zero_init(model)
    x = video(f=1, h=6, w=10)  # 3 x 5 patches, configured for 4 x 4
    captured = {}
    model.blocks[0].register_forward_pre_hook(lambda _, args: captured.update(tokens=args[0]))
    out = model(x, torch.tensor([3, 600]), Cond(labels=torch.tensor([1, 3])))
    assert tuple(out.shape) == (2, 4, 1, 6, 10) and torch.isfinite(out).all()
    # the position table is the 3-row x 5-column one (a swapped h/w table has as many rows)
    added = captured["tokens"] - model.x_embedder(x)
    table = sincos_2d_table(16, 3, 5).double()
    torch.testing.assert_close(added, table.expand_as(added), rtol=0, atol=1e-12)
    assert not torch.allclose(table, sincos_2d_table(16, 5, 3).double())
