"""Shared neural-network layers: attention (self, space-time, cross), adaLN, embeddings (timestep, label,
sin-cos, RoPE), patch embeds, the transformer block."""

from vidgen.nn.adaln import AdaLNModulation, modulate
from vidgen.nn.attention import Attention, CrossAttention
from vidgen.nn.embeddings import (
    LabelEmbedder,
    TimestepEmbedder,
    sincos_1d,
    sincos_1d_table,
    sincos_2d_table,
    timestep_embedding,
)
from vidgen.nn.final_layer import FinalLayer
from vidgen.nn.mlp import Mlp
from vidgen.nn.patch_embed import FramePatchEmbed, TemporalUpsample, TubePatchEmbed
from vidgen.nn.rope import apply_rope, rope_angles, rotate_half
from vidgen.nn.spacetime import Axis, TokenGrid
from vidgen.nn.transformer import BlockRole, TransformerBlock

__all__ = [
    "AdaLNModulation",
    "Attention",
    "Axis",
    "BlockRole",
    "CrossAttention",
    "FinalLayer",
    "FramePatchEmbed",
    "LabelEmbedder",
    "Mlp",
    "TemporalUpsample",
    "TimestepEmbedder",
    "TokenGrid",
    "TransformerBlock",
    "TubePatchEmbed",
    "apply_rope",
    "modulate",
    "rope_angles",
    "rotate_half",
    "sincos_1d",
    "sincos_1d_table",
    "sincos_2d_table",
    "timestep_embedding",
]
