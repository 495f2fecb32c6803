"""CMD autoencoder (stage 1): GEGLU, axial RoPE, the divided block, and the AE's contract (spec cmd.md Sec. 8).

Tests 1-6, 12, 13 of the spec: convex content frame, static clips, shapes (non-square: bug B8), axis
bookkeeping of the motion planes, positions actually used (bug B7), ranges, exact parameter counts, and a
short overfit on translating squares.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidgen.models.cmd import CMD_AE_SIZES, CMDAutoencoder
from vidgen.nn.divided_block import DividedSpaceTimeBlock
from vidgen.nn.geglu import GEGLUFeedForward
from vidgen.nn.rope import apply_rope, axial_rope_angles, rope_angles

POSITIONS = ("rope", "none")
OUTPUTS = ("bounded", "linear")


def tiny_ae(in_channels: int = 2, input_size=(8, 12), num_frames: int = 4, **kw) -> CMDAutoencoder:
    """A tiny float64 AE (4x6 patch grid by default: non-square, so H'/W' mix-ups show)."""
    torch.manual_seed(kw.pop("seed", 0))
    return CMDAutoencoder(in_channels, input_size, num_frames, size="tiny", **kw).double()


def clip(b: int = 2, c: int = 2, f: int = 4, h: int = 8, w: int = 12, seed: int = 1) -> torch.Tensor:
    """``(B, C, F, H, W)`` float64 in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, f, h, w, generator=g, dtype=torch.float64) * 2 - 1


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------- shared layers


def test_geglu_gates_with_the_second_half():
    torch.manual_seed(0)
    ff = GEGLUFeedForward(8, mult=2).double()
    assert (ff.proj_in.out_features, ff.proj_out.in_features) == (32, 16)
    x = torch.randn(3, 8, dtype=torch.float64)
    hidden = ff.proj_in(x)
    expected = ff.proj_out(hidden[:, :16] * F.gelu(hidden[:, 16:]))
    torch.testing.assert_close(ff(x), expected)
    swapped = ff.proj_out(hidden[:, 16:] * F.gelu(hidden[:, :16]))
    assert not torch.allclose(ff(x), swapped)
    assert n_params(GEGLUFeedForward(384)) == 1_182_720 + 590_208


def test_axial_rope_scores_depend_only_on_the_offset():
    height, width, d = 5, 7, 16
    cos, sin = axial_rope_angles(height, width, d, dtype=torch.float64)
    assert cos.shape == sin.shape == (height * width, d)
    torch.manual_seed(0)
    q, k = torch.randn(2, d, dtype=torch.float64)
    qs = apply_rope(q.expand(height * width, d), cos, sin)  # the same query at every position
    ks = apply_rope(k.expand(height * width, d), cos, sin)

    def score(a: tuple[int, int], b: tuple[int, int]) -> torch.Tensor:
        return qs[a[0] * width + a[1]] @ ks[b[0] * width + b[1]]

    for dy, dx in [(0, 0), (1, 0), (0, 1), (2, -3), (-1, 2)]:
        scores = torch.stack(
            [
                score((y, x), (y - dy, x - dx))
                for y in range(max(dy, 0), height + min(dy, 0))
                for x in range(max(dx, 0), width + min(dx, 0))
            ]
        )
        torch.testing.assert_close(scores, scores[0].expand_as(scores))
    # the two axes are encoded differently, and a row offset matters (not only the flat index)
    assert not torch.isclose(score((1, 0), (0, 0)), score((0, 1), (0, 0)))
    assert not torch.isclose(score((1, 0), (0, 0)), score((0, width - 1), (0, 0)))
    # a single column is 1D RoPE on the first quarter of the pairs; the column pairs do not rotate
    col_cos, col_sin = axial_rope_angles(height, 1, d, dtype=torch.float64)
    ref_cos, ref_sin = rope_angles(torch.arange(height), d // 2, dtype=torch.float64)
    torch.testing.assert_close(col_cos[:, : d // 4], ref_cos[:, : d // 4])
    torch.testing.assert_close(col_sin[:, : d // 4], ref_sin[:, : d // 4])
    assert torch.all(col_cos[:, d // 4 : d // 2] == 1) and torch.all(col_sin[:, d // 4 : d // 2] == 0)


def test_axial_rope_needs_head_dim_divisible_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        axial_rope_angles(2, 2, 6)


def test_divided_block_parameter_count():
    with torch.device("meta"):
        assert n_params(DividedSpaceTimeBlock(384, 8)) == 2_957_952
        assert n_params(DividedSpaceTimeBlock(384, 6)) == 2_957_952


def test_divided_block_attends_over_time_then_space():
    """With one attention silenced (output projection zeroed), the block mixes only along the other axis."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 16, dtype=torch.float64)  # (B, F, S, D)
    bumped = x.clone()
    bumped[0, 1, 2] += 1.0
    for silenced, same in [
        ("time_attn", lambda d: d[0, [0, 2]]),
        ("space_attn", lambda d: d[0, :, [0, 1, 3]]),
    ]:
        block = DividedSpaceTimeBlock(16, 4).double()
        proj = getattr(block, silenced).proj
        nn.init.zeros_(proj.weight)
        nn.init.zeros_(proj.bias)
        diff = (block(bumped) - block(x)).abs()
        assert same(diff).max() == 0, silenced  # other frames / other positions untouched
        assert diff[0, 1, 2].max() > 0


# ------------------------------------------------------------------------------------------ 1. convex


@pytest.mark.parametrize("position", POSITIONS)
def test_content_frame_is_a_convex_combination_of_the_frames(position):
    ae = tiny_ae(position=position)
    x = clip()
    weights = ae.content_weights(x)
    assert weights.shape == x.shape
    assert weights.min() >= 0
    torch.testing.assert_close(weights.sum(dim=2), torch.ones_like(x[:, :, 0]), atol=1e-6, rtol=0)
    assert weights.std(dim=2).max() > 1e-4  # not trivially uniform
    content, _ = ae.encode(x)
    torch.testing.assert_close(content, (x * weights).sum(dim=2))
    assert (content >= x.amin(dim=2) - 1e-12).all() and (content <= x.amax(dim=2) + 1e-12).all()


# ------------------------------------------------------------------------------------------ 2. static


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("position", POSITIONS)
def test_static_clip_gives_its_frame_and_a_constant_motion_latent(position, output):
    ae = tiny_ae(position=position, output=output, num_frames=16)
    frame = clip(f=1)
    x = frame.expand(-1, -1, 5, -1, -1)  # 5 frames, not the default 16: any F works
    content, motion = ae.encode(x)
    torch.testing.assert_close(content, frame[:, :, 0], atol=1e-5, rtol=0)
    assert motion.shape == (2, 8, 5, 10)
    torch.testing.assert_close(motion, motion[:, :, :1].expand_as(motion), atol=1e-10, rtol=0)
    assert motion.std(dim=-1).max() > 1e-4  # ... but not constant along space


# ------------------------------------------------------------------------------------------ 3. shapes


@pytest.mark.parametrize(("size", "channels"), [((64, 64), 3), ((32, 32), 4), ((64, 128), 4)])
def test_shapes(size, channels):
    torch.manual_seed(0)
    ae = CMDAutoencoder(channels, size, 16, size="tiny", output="bounded" if channels == 3 else "linear")
    h, w = size
    assert ae.input_size == (h, w) and ae.latent_size == (h // 2, w // 2)
    assert ae.content_shape == (channels, h, w)
    assert ae.motion_shape() == ae.motion_shape(16) == (8, 16, (h + w) // 2)
    x = torch.rand(1, channels, 16, h, w) * 2 - 1
    with torch.no_grad():
        recon, content, motion = ae(x)
    assert content.shape == (1, *ae.content_shape)
    assert motion.shape == (1, *ae.motion_shape())
    assert recon.shape == x.shape
    assert ae.decode(content, motion[:, :, :3]).shape == (1, channels, 3, h, w)


def test_decode_rejects_a_motion_latent_of_the_wrong_width():
    ae = tiny_ae()
    content, motion = ae.encode(clip())
    with pytest.raises(ValueError, match="motion"):
        ae.decode(content, motion[..., :-1])


# ------------------------------------------------------------------------------- 4. axis bookkeeping


class AxisStub(nn.Module):
    """Encoder backbone stand-in: features that depend only on the patch column (or only on the row)."""

    def __init__(self, axis: str, dim: int) -> None:
        super().__init__()
        self.axis = axis
        self.table = torch.randn(16, dim, dtype=torch.float64)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h, w = grid
        index = torch.arange(h * w)
        index = index % w if self.axis == "w" else index // w
        return self.table[index].expand(*tokens.shape[:2], -1, -1)


@pytest.mark.parametrize("axis", ["w", "h"])
def test_motion_halves_are_indexed_by_w_then_h(axis):
    ae = tiny_ae()
    torch.manual_seed(3)
    ae.encoder = AxisStub(axis, ae.dim)
    h, w = ae.latent_size  # 4, 6
    _, motion = ae.encode(clip())
    z_x, z_y = motion[..., :w], motion[..., w:]  # w-indexed half first
    assert z_y.shape[-1] == h
    varying, constant = (z_x, z_y) if axis == "w" else (z_y, z_x)
    assert varying.std(dim=-1).min() > 1e-3
    torch.testing.assert_close(constant, constant[..., :1].expand_as(constant), atol=1e-12, rtol=0)


def test_decoder_input_is_the_broadcast_sum_of_the_three_planes():
    ae = tiny_ae(num_frames=3)
    h, w = ae.latent_size
    seen = {}
    ae.decoder.register_forward_pre_hook(lambda module, args: seen.update(tokens=args[0]))
    torch.manual_seed(4)
    content = torch.randn(2, 2, 8, 12, dtype=torch.float64)
    motion = torch.rand(2, 8, 3, w + h, dtype=torch.float64) * 2 - 1
    ae.decode(content, motion)

    v_t = rearrange(ae.content_embed(content[:, :, None]), "b 1 (h w) d -> b d h w", h=h)
    wx, bx = ae.motion_x_embed.weight[:, :, 0, 0], ae.motion_x_embed.bias
    wy, by = ae.motion_y_embed.weight[:, :, 0, 0], ae.motion_y_embed.bias
    v_x = torch.einsum("oi,bifw->bofw", wx, motion[..., :w]) + bx[:, None, None]
    v_y = torch.einsum("oi,bifh->bofh", wy, motion[..., w:]) + by[:, None, None]
    expected = torch.empty(2, ae.dim, 3, h, w, dtype=torch.float64)
    for f in range(3):
        for i in range(h):
            for j in range(w):
                expected[:, :, f, i, j] = v_t[:, :, i, j] + v_x[:, :, f, j] + v_y[:, :, f, i]
    torch.testing.assert_close(seen["tokens"], rearrange(expected, "b d f h w -> b f (h w) d"))


# -------------------------------------------------------------------------------- 5. positions used


def permuted_patch_rows(x: torch.Tensor, rows: list[int], p: int = 2) -> torch.Tensor:
    """Reorder the rows of ``p x p`` patches of ``x: (..., H, W)``."""
    blocks = rearrange(x, "... (h p) w -> ... h p w", p=p)
    return rearrange(blocks[..., rows, :, :], "... h p w -> ... (h p) w")


@pytest.mark.parametrize("position", POSITIONS)
def test_time_order_matters_only_with_rope(position):
    ae = tiny_ae(position=position)
    x = clip()
    perm = [2, 0, 3, 1]
    content, motion = ae.encode(x)
    content_p, motion_p = ae.encode(x[:, :, perm])
    recon = ae.decode(content, motion)
    recon_p = ae.decode(content, motion[:, :, perm])
    if position == "none":  # the release: permutation-equivariant over frames (bug B7)
        torch.testing.assert_close(motion_p, motion[:, :, perm], atol=1e-5, rtol=0)
        torch.testing.assert_close(content_p, content, atol=1e-5, rtol=0)
        torch.testing.assert_close(recon_p, recon[:, :, perm], atol=1e-5, rtol=0)
    else:
        assert (motion_p - motion[:, :, perm]).abs().max() > 1e-4
        assert (recon_p - recon[:, :, perm]).abs().max() > 1e-4


@pytest.mark.parametrize("position", POSITIONS)
def test_patch_order_matters_only_with_rope(position):
    ae = tiny_ae(position=position)
    x = clip()
    rows = [3, 1, 0, 2]
    content, motion = ae.encode(x)
    content_p, motion_p = ae.encode(permuted_patch_rows(x, rows))
    w = ae.latent_size[1]
    if position == "none":
        torch.testing.assert_close(content_p, permuted_patch_rows(content, rows), atol=1e-5, rtol=0)
        torch.testing.assert_close(motion_p[..., :w], motion[..., :w], atol=1e-5, rtol=0)
        torch.testing.assert_close(motion_p[..., w:], motion[..., w:][..., rows], atol=1e-5, rtol=0)
    else:
        assert (content_p - permuted_patch_rows(content, rows)).abs().max() > 1e-4
        assert (motion_p[..., w:] - motion[..., w:][..., rows]).abs().max() > 1e-4


# -------------------------------------------------------------------------------------------- 6. range


def test_ranges_and_output_activation():
    bounded = tiny_ae(output="bounded")
    linear = tiny_ae(output="linear")
    linear.load_state_dict(bounded.state_dict())
    x = clip() * 3
    recon_b, _, motion = bounded(x)
    recon_l, _, _ = linear(x)
    assert motion.abs().max() < 1 and recon_b.abs().max() < 1
    torch.testing.assert_close(recon_b, 2 * torch.sigmoid(recon_l) - 1)
    # a linear head is unbounded: scale the output layer up and it leaves (-1, 1)
    with torch.no_grad():
        linear.output_head.weight.mul_(100)
    assert linear(x)[0].abs().max() > 1


# ------------------------------------------------------------------------------------- config, presets


def test_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="position"):
        CMDAutoencoder(3, 16, 4, size="tiny", position="absolute")
    with pytest.raises(ValueError, match="output"):
        CMDAutoencoder(3, 16, 4, size="tiny", output="tanh")
    with pytest.raises(ValueError, match="input_size"):
        CMDAutoencoder(3, (16, 15), 4, size="tiny")
    with pytest.raises(ValueError, match="size"):
        CMDAutoencoder(3, 16, 4, size="huge")
    with pytest.raises(ValueError, match="num_heads"):  # head_dim 6: no axial RoPE ...
        CMDAutoencoder(3, 16, 4, size="tiny", dim=24, num_heads=4)
    CMDAutoencoder(3, 16, 4, size="tiny", dim=24, num_heads=4, position="none")  # ... fine without


def test_presets_overrides_and_arch_config_round_trip():
    with torch.device("meta"):
        default = CMDAutoencoder(4, (32, 64), 16)
        assert (default.dim, default.depth, default.num_heads) == (384, 8, 6)  # the paper preset
        ae = CMDAutoencoder(4, (32, 64), 16, size="release", num_heads=4, depth=2, position="none")
        assert (ae.dim, ae.depth, ae.num_heads, ae.patch_size, ae.motion_dim) == (384, 2, 4, 2, 8)
        config = ae.arch_config()
        assert config == {
            "in_channels": 4, "input_size": [32, 64], "num_frames": 16, "dim": 384, "depth": 2,
            "num_heads": 4, "patch_size": 2, "motion_dim": 8, "position": "none", "output": "bounded",
        }  # fmt: skip
        assert CMDAutoencoder(**config).arch_config() == config
    assert set(CMD_AE_SIZES) == {"tiny", "release", "paper"}


# ---------------------------------------------------------------------------------- 12. parameter counts


@pytest.mark.parametrize(
    ("size", "channels", "expected"),
    [
        ("release", 3, 47_359_510),
        ("release", 4, 47_365_656),
        ("paper", 3, 47_359_510),
        ("paper", 4, 47_365_656),
        ("tiny", 3, 45_142),
        ("tiny", 4, 45_656),
    ],
)
def test_parameter_counts(size, channels, expected):
    with torch.device("meta"):
        assert n_params(CMDAutoencoder(channels, 64, 16, size=size)) == expected
        assert n_params(CMDAutoencoder(channels, (32, 64), 8, size=size, position="none")) == expected


def test_release_parameter_count_on_cpu():
    """The same count with real (CPU) tensors, as a checkpoint would hold them."""
    assert n_params(CMDAutoencoder(3, 64, 16, size="release")) == 47_359_510


# ------------------------------------------------------------------------------------------ 13. overfit


def translating_squares(n: int = 4, frames: int = 8, size: int = 16, side: int = 4) -> torch.Tensor:
    """``(n, 1, frames, size, size)``: a +1 square on a -1 background, moving one pixel a frame."""
    g = torch.Generator().manual_seed(1)
    x = -torch.ones(n, 1, frames, size, size)
    for i in range(n):
        y0, x0 = torch.randint(0, size - side, (2,), generator=g).tolist()
        vy, vx = [(1, 0), (0, 1), (1, 1), (-1, 1)][i % 4]
        for t in range(frames):
            y, xx = (y0 + vy * t) % (size - side), (x0 + vx * t) % (size - side)
            x[i, 0, t, y : y + side, xx : xx + side] = 1
    return x


def test_overfits_translating_squares():
    torch.manual_seed(0)
    x = translating_squares()
    ae = CMDAutoencoder(1, 16, 8, size="tiny")
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    static = ((x - x.mean(dim=2, keepdim=True)) ** 2).mean()  # best reconstruction with no motion
    with torch.no_grad():
        initial = F.mse_loss(ae(x)[0], x)
    for _ in range(150):
        recon, content, motion = ae(x)
        loss = F.mse_loss(recon, x)
        if loss < initial / 10 and loss < static / 2:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss < initial / 10, (loss, initial)
    assert loss < static / 2, (loss, static)  # the motion latent carries the trajectory
    assert motion.std(dim=2).mean() > 1e-2
    assert (content >= x.amin(dim=2) - 1e-6).all() and (content <= x.amax(dim=2) + 1e-6).all()
