"""Shared layers in vidgen.nn: embeddings, attention, adaLN, patch embedding, the transformer block."""

from __future__ import annotations

import math

import pytest
import torch
from einops import rearrange

from vidgen.nn import (
    AdaLNModulation,
    Attention,
    FinalLayer,
    FramePatchEmbed,
    LabelEmbedder,
    TimestepEmbedder,
    TransformerBlock,
    modulate,
    sincos_1d_table,
    sincos_2d_table,
    timestep_embedding,
)


def test_timestep_embedding_values():
    t = torch.tensor([0, 7])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (2, 8)
    assert torch.equal(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # [cos, sin] at t = 0
    freqs = torch.tensor([10000 ** (-i / 4) for i in range(4)])
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(7 * freqs), torch.sin(7 * freqs)]))
    # fractional timesteps and odd sizes (zero pad column)
    odd = timestep_embedding(torch.tensor([0.5]), 5)
    assert odd.shape == (1, 5) and odd[0, -1] == 0


def test_timestep_and_label_embedders():
    te = TimestepEmbedder(16)
    assert te(torch.tensor([3, 900])).shape == (2, 16)
    le = LabelEmbedder(10, 16)
    assert le.embedding_table.weight.shape == (11, 16)  # last row = null class
    assert le(torch.tensor([0, 10])).shape == (2, 16)


def test_sincos_1d_table_matches_formula():
    table = sincos_1d_table(6, 5)
    assert table.shape == (5, 6)
    omega = torch.tensor([1.0 / 10000 ** (i / 3) for i in range(3)], dtype=torch.float64)
    for p in range(5):
        expected = torch.cat([torch.sin(p * omega), torch.cos(p * omega)]).float()
        torch.testing.assert_close(table[p], expected)


def test_sincos_2d_table_layout():
    """Tokens are row-major; channels [:D/2] encode the column, [D/2:] the row (DiT/MAE layout)."""
    dim, height, width = 8, 2, 3
    table = sincos_2d_table(dim, height, width)
    assert table.shape == (height * width, dim)
    one_d = sincos_1d_table(dim // 2, max(height, width))
    for r in range(height):
        for c in range(width):
            torch.testing.assert_close(table[r * width + c], torch.cat([one_d[c], one_d[r]]))
    with pytest.raises(ValueError):
        sincos_2d_table(6, 2, 2)


def _reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    n, length, dim = x.shape
    heads, hd = attn.num_heads, dim // attn.num_heads
    qkv = attn.qkv(x).reshape(n, length, 3, heads, hd).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(hd), dim=-1)
    out = (weights @ qkv[2]).transpose(1, 2).reshape(n, length, dim)
    return attn.proj(out)


def test_attention_matches_manual_softmax_and_mask():
    torch.manual_seed(0)
    attn = Attention(16, 4).double()
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    torch.testing.assert_close(attn(x), _reference_attention(attn, x))
    # a block-diagonal bool mask == attending within each part separately
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[:2, :2] = True
    mask[2:, 2:] = True
    masked = attn(x, attn_mask=mask)
    torch.testing.assert_close(masked[:, :2], attn(x[:, :2]))
    torch.testing.assert_close(masked[:, 2:], attn(x[:, 2:]))
    with pytest.raises(ValueError):
        Attention(10, 4)


def test_modulate_and_adaln_shapes():
    mod = AdaLNModulation(8, 6)
    assert torch.count_nonzero(mod[1].weight) == 0 and torch.count_nonzero(mod[1].bias) == 0
    chunks = mod(torch.randn(2, 8), token_dims=2)
    assert len(chunks) == 6 and all(c.shape == (2, 1, 1, 8) for c in chunks)
    x = torch.randn(2, 3, 4, 8)
    shift, scale = torch.randn(2, 1, 1, 8), torch.randn(2, 1, 1, 8)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale) + shift)


def test_frame_patch_embed_is_per_frame_conv_row_major():
    torch.manual_seed(0)
    embed = FramePatchEmbed(3, 8, 2)
    x = torch.randn(2, 3, 4, 6, 8)  # B C F H W
    tokens = embed(x)
    assert tokens.shape == (2, 4, 3 * 4, 8)  # (B, F, h*w, D)
    weight = embed.proj.weight.reshape(8, -1)
    b, f, r, c = 1, 2, 2, 1
    patch = x[b, :, f, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].reshape(-1)
    torch.testing.assert_close(tokens[b, f, r * 4 + c], weight @ patch + embed.proj.bias)


def test_final_layer_starts_at_zero():
    layer = FinalLayer(8, 2, 6)
    out = layer(torch.randn(2, 3, 5, 8), torch.randn(2, 8))
    assert out.shape == (2, 3, 5, 2 * 2 * 6)
    assert torch.count_nonzero(out) == 0


def _randomize(module: torch.nn.Module, std: float = 0.1) -> None:
    for m in module.modules():
        if isinstance(m, AdaLNModulation):
            torch.nn.init.normal_(m[1].weight, std=std)
            torch.nn.init.normal_(m[1].bias, std=std)


def test_block_is_identity_at_zero_init():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4)
    x = torch.randn(2, 3, 5, 16)
    assert torch.equal(block(x, torch.randn(2, 16)), x)


def test_block_broadcasts_conditioning_over_groups():
    """A (B, G, L, D) input gives exactly what running each group as its own (B, L, D) batch gives."""
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).double()
    _randomize(block)
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64)
    c = torch.randn(2, 16, dtype=torch.float64)
    out = block(x, c)
    for g in range(3):
        torch.testing.assert_close(out[:, g], block(x[:, g], c))


def test_block_attends_only_within_a_group():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4).double()
    _randomize(block)
    x = torch.randn(2, 3, 5, 16, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 16, dtype=torch.float64)
    block(x, c)[1, 2, 4].sum().backward()
    touched = x.grad.abs().sum(-1) != 0  # (B, G, L)
    expected = torch.zeros_like(touched)
    expected[1, 2, :] = True
    assert torch.equal(touched, expected)


def test_patch_embed_rearranges_back():
    """Sanity of the einops round trip the model relies on: (b f) frames -> tokens -> frames."""
    embed = FramePatchEmbed(1, 4, 1)
    torch.nn.init.ones_(embed.proj.weight)
    torch.nn.init.zeros_(embed.proj.bias)
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 1, 3, 2, 2)
    tokens = embed(x)[..., 0]  # (B, F, h*w)
    assert torch.equal(tokens, rearrange(x, "b 1 f h w -> b f (h w)"))
