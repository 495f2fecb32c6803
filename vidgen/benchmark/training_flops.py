"""Training FLOPs per clip of a composed config: counted on the meta device, never timed.

The convention is :mod:`vidgen.benchmark.sampling_flops`'s (``FlopCounterMode``: matrix products, attention
through SDPA's math path, 1 multiply-accumulate = 2 FLOPs, element-wise work not counted). One training clip
costs what one optimizer step spends on it:

* the frozen encoders' forward: the frame autoencoder's ``encode`` of the clip (SD's VAE; 0 for pixels) and,
  for CMD's diffusion stage, the frozen CMD autoencoder's ``encode``;
* each trained network's forward and backward: the denoiser (Latte, the U-Nets), CMD's content-frame model
  and motion model (each on its own noisy input), or CMD's autoencoder (``model=cmd_ae``, encode + decode).

Not counted: the text encoder (its states are a stand-in of the configured shape, as for sampling), LPIPS in
CMD's ``l1_lpips`` loss, the optimizer and the EMA update (element-wise). A cached dataset (``data.cache``)
skips the frozen frame encoder at training time; the count includes it, so that a budget does not depend on
how the clips are stored (:attr:`TrainingFlops.encode` gives that part on its own).

:func:`training_flops` builds the module with :func:`~vidgen.benchmark.sampling_flops.build_counting_module`
(CMD's diffusion stage with an untrained autoencoder of the stage-1 size: FLOPs do not depend on weights).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from vidgen.benchmark.sampling_flops import (
    CONVENTION,
    build_counting_module,
    count_forward_flops,
    timestep_input,
)
from vidgen.conditioning import Cond

__all__ = ["TrainingFlops", "count_training_flops", "counting_config", "training_flops"]


def count_training_flops(fn: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> int:
    """FLOPs of ``fn(*args, **kwargs)`` (a network's forward, with gradients) plus the backward of a scalar
    of its output into every parameter that requires a gradient (the inputs need none)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        out.float().pow(2).mean().backward()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class TrainingFlops:
    """FLOPs of training on one clip, by part.

    Attributes:
        stage: ``diffusion`` (a denoiser, or CMD's content + motion models) or ``autoencoder`` (CMD stage 1).
        encode: the frozen encoders' forward on the clip.
        trained: forward + backward of every trained network, by name (``denoiser``; ``content``,
            ``motion``; ``autoencoder``).
        params: trainable parameters of the stage.
    """

    stage: str
    encode: int
    trained: dict[str, int]
    params: int

    @property
    def per_clip(self) -> int:
        """All FLOPs of one clip of one training step."""
        return self.encode + sum(self.trained.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "per_clip": self.per_clip,
            "encode": self.encode,
            "trained": dict(self.trained),
            "params": self.params,
            "convention": CONVENTION,
        }


def _training_cond(module: Any, device: torch.device) -> Cond:
    """The condition of one training clip: a caption for text models, class 0 for class models."""
    batch: dict[str, Any] = {"video": torch.zeros((1, *module.video_shape), device=device)}
    if getattr(module.conditioner, "text_dim", 0):
        batch["caption"] = ["a video"]
    if getattr(module.conditioner, "num_classes", 0):
        batch["label"] = torch.zeros(1, dtype=torch.long, device=device)
    return module.conditioner(batch, train=False).to(device)


def counting_config(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` that :func:`build_counting_module` accepts: CMD's diffusion stage with an untrained
    autoencoder of the stage-1 size (``model_size_by_family.cmd_ae``, else ``cmd.untrained_size``)."""
    cfg = copy.deepcopy(cfg)
    if str(cfg.model._target_).rsplit(".", 1)[-1] == "CMDDenoisers":
        size = OmegaConf.select(cfg, "model_size_by_family.cmd_ae", default=None) or cfg.cmd.untrained_size
        with open_dict(cfg):
            cfg.cmd.autoencoder_ckpt = "untrained"
            cfg.cmd.untrained_size = str(size)
    return cfg


def training_flops(cfg: DictConfig) -> TrainingFlops:
    """Count the training FLOPs of one clip of the composed config ``cfg`` (module docstring)."""
    from vidgen.lit.cmd_autoencoder_module import CMDAutoencoderModule
    from vidgen.lit.cmd_module import CMDDiffusionModule

    module = build_counting_module(counting_config(cfg))
    device = torch.device("meta")
    video = torch.zeros((1, *module.video_shape), device=device)
    if isinstance(module, CMDAutoencoderModule):
        inputs = module.frame_autoencoder.encode(video)
        return TrainingFlops(
            stage="autoencoder",
            encode=count_forward_flops(module.frame_autoencoder.encode, video),
            trained={"autoencoder": count_training_flops(module.network, inputs)},
            params=module.num_denoiser_params(),
        )
    latents = torch.zeros((1, *module.latent_shape), device=device)
    encode = count_forward_flops(module.autoencoder.encode, video)
    t = timestep_input(module, device)
    cond = _training_cond(module, device)
    denoiser = module.denoiser
    if isinstance(module, CMDDiffusionModule):
        encode += count_forward_flops(module.cmd_autoencoder.encode, latents)
        content = torch.zeros((1, *module.content_shape), device=device)  # (1, c, 1, h, w)
        motion = torch.zeros((1, *module.motion_shape), device=device)  # (1, D, F, w' + h')
        motion_cond = replace(cond, content_frame=content[:, :, 0])
        trained = {
            "content": count_training_flops(denoiser.content, content, t, cond),
            "motion": count_training_flops(denoiser.motion, motion, t, motion_cond),
        }
    else:
        trained = {"denoiser": count_training_flops(denoiser, latents, t, cond)}
    return TrainingFlops(
        stage="diffusion", encode=encode, trained=trained, params=module.num_denoiser_params()
    )
