"""Shared neural-network layers: attention (self, space-time, cross), adaLN, embeddings (timestep, label,
sin-cos, RoPE), patch embeds, the transformer block, the temporal parts of the U-Net video models (temporal
shift, temporal attention, and the frame-hook plumbing they share), and the layers of the factorised 3D
U-Net on ``(B, C, F, H, W)`` (frame-local GroupNorm, 1x3x3 ResBlocks and space-only resampling, spatial and
temporal attention, relative temporal positions, the Fourier-MLP and attention-pool embeddings). The shift
function itself is ``vidgen.nn.temporal_shift.temporal_shift`` (not re-exported: the name would hide its
module)."""

from vidgen.nn.adaln import AdaLNModulation, modulate
from vidgen.nn.attention import Attention, CrossAttention
from vidgen.nn.condition_embedding import AttentionPool, FourierMLP
from vidgen.nn.embeddings import (
    LabelEmbedder,
    TimestepEmbedder,
    sincos_1d,
    sincos_1d_table,
    sincos_2d_table,
    timestep_embedding,
)
from vidgen.nn.factorised_attention import SpatialAttention, TemporalSelfAttention
from vidgen.nn.final_layer import FinalLayer
from vidgen.nn.frame_hooks import (
    FrameCheckpoint,
    FrameContext,
    HookHandles,
    batch_to_frames,
    check_frame_layout,
    frames_to_batch,
)
from vidgen.nn.frame_norm import FrameGroupNorm
from vidgen.nn.mlp import Mlp
from vidgen.nn.patch_embed import FramePatchEmbed, TemporalUpsample, TubePatchEmbed
from vidgen.nn.resblock3d import ResBlock3D, SpatialDownsample, SpatialUpsample, spatial_conv
from vidgen.nn.rope import apply_rope, rope_angles, rotate_half
from vidgen.nn.spacetime import Axis, TokenGrid
from vidgen.nn.temporal_attention import (
    TemporalAttention,
    TemporalAttentionHook,
    attach_temporal_attention,
    build_temporal_layers,
    spatial_transformers,
)
from vidgen.nn.temporal_position import (
    TEMPORAL_POSITIONS,
    RotaryPosition,
    ShawPosition,
    T5Bias,
    TemporalPosition,
    build_temporal_position,
    joint_training_mask,
    relative_offsets,
    t5_buckets,
)
from vidgen.nn.temporal_shift import TemporalShiftHook, attach_temporal_shift, resnet_blocks, shift_fold
from vidgen.nn.transformer import BlockRole, TransformerBlock

__all__ = [
    "TEMPORAL_POSITIONS",
    "AdaLNModulation",
    "Attention",
    "AttentionPool",
    "Axis",
    "BlockRole",
    "CrossAttention",
    "FinalLayer",
    "FourierMLP",
    "FrameCheckpoint",
    "FrameContext",
    "FrameGroupNorm",
    "FramePatchEmbed",
    "HookHandles",
    "LabelEmbedder",
    "Mlp",
    "ResBlock3D",
    "RotaryPosition",
    "ShawPosition",
    "SpatialAttention",
    "SpatialDownsample",
    "SpatialUpsample",
    "T5Bias",
    "TemporalAttention",
    "TemporalAttentionHook",
    "TemporalPosition",
    "TemporalSelfAttention",
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
    "build_temporal_position",
    "check_frame_layout",
    "frames_to_batch",
    "joint_training_mask",
    "modulate",
    "relative_offsets",
    "resnet_blocks",
    "rope_angles",
    "rotate_half",
    "shift_fold",
    "sincos_1d",
    "sincos_1d_table",
    "sincos_2d_table",
    "spatial_conv",
    "spatial_transformers",
    "t5_buckets",
    "timestep_embedding",
]
