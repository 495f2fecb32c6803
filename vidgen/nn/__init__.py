"""Shared neural-network layers: attention, adaLN, embeddings (timestep, label, sin-cos), patch embeds."""

from vidgen.nn.adaln import AdaLNModulation, modulate
from vidgen.nn.attention import Attention
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
from vidgen.nn.patch_embed import FramePatchEmbed
from vidgen.nn.transformer import TransformerBlock

__all__ = [
    "AdaLNModulation",
    "Attention",
    "FinalLayer",
    "FramePatchEmbed",
    "LabelEmbedder",
    "Mlp",
    "TimestepEmbedder",
    "TransformerBlock",
    "modulate",
    "sincos_1d",
    "sincos_1d_table",
    "sincos_2d_table",
    "timestep_embedding",
]
