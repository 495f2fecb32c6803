"""vidgen: an experiment framework for video diffusion models on Hydra + PyTorch Lightning.

Tensor conventions used everywhere in the package:

* videos and video latents are ``(B, C, F, H, W)`` (Conv3d order), float, pixels in ``[-1, 1]``;
* timesteps are ``(B,)`` integer tensors indexing the *original* (un-respaced) diffusion chain;
* a denoiser is ``forward(x, t, cond) -> out`` with ``x: (B, C, F, H, W)`` and ``out: (B, C_out, F, H, W)``
  where ``C_out = 2 * C`` when the network learns the variance range.
"""

__version__ = "0.1.0"

from vidgen.config.resolvers import register_resolvers as _register_resolvers

_register_resolvers()
