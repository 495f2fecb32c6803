"""Shared neural-network layers: attention (self, space-time, cross), adaLN, embeddings (timestep, label,
sin-cos, RoPE), patch embeds, the transformer block, and the temporal parts of the U-Net video models
(temporal shift, temporal attention, and the frame-hook plumbing they share). The shift function itself is
``vidgen.nn.temporal_shift.temporal_shift`` (not re-exported: the name would hide its module)."""

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
from vidgen.nn.frame_hooks import (
    FrameCheckpoint,
    FrameContext,
    HookHandles,
    batch_to_frames,
    check_frame_layout,
    frames_to_batch,
)
from vidgen.nn.mlp import Mlp
from vidgen.nn.patch_embed import FramePatchEmbed, TemporalUpsample, TubePatchEmbed
from vidgen.nn.rope import apply_rope, rope_angles, rotate_half
from vidgen.nn.spacetime import Axis, TokenGrid
from vidgen.nn.temporal_attention import (
    TemporalAttention,
    TemporalAttentionHook,
    attach_temporal_attention,
    build_temporal_layers,
    spatial_transformers,
)
from vidgen.nn.temporal_shift import TemporalShiftHook, attach_temporal_shift, resnet_blocks, shift_fold
from vidgen.nn.transformer import BlockRole, TransformerBlock

__all__ = [
    "AdaLNModulation",
    "Attention",
    "Axis",
    "BlockRole",
    "CrossAttention",
    "FinalLayer",
    "FrameCheckpoint",
    "FrameContext",
    "FramePatchEmbed",
    "HookHandles",
    "LabelEmbedder",
    "Mlp",
    "TemporalAttention",
    "TemporalAttentionHook",
    "TemporalShiftHook",
    "TemporalUpsample",
    "TimestepEmbedder",
    "TokenGrid",
    "TransformerBlock",
    "TubePatchEmbed",
    "apply_rope",
    "attach_temporal_attention",
    "attach_temporal_shift",
    "batch_to_frames",
    "build_temporal_layers",
    "check_frame_layout",
    "frames_to_batch",
    "modulate",
    "resnet_blocks",
    "rope_angles",
    "rotate_half",
    "shift_fold",
    "sincos_1d",
    "sincos_1d_table",
    "sincos_2d_table",
    "spatial_transformers",
    "timestep_embedding",
]
