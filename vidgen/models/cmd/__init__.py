"""CMD (Yu et al., ICLR 2024): content-frame motion-latent decomposition; stage 1 is the autoencoder."""

from vidgen.models.cmd.autoencoder import (
    CMD_AE_OUTPUTS,
    CMD_AE_POSITIONS,
    CMD_AE_SIZES,
    CMDAESize,
    CMDAutoencoder,
)

__all__ = ["CMD_AE_OUTPUTS", "CMD_AE_POSITIONS", "CMD_AE_SIZES", "CMDAESize", "CMDAutoencoder"]
