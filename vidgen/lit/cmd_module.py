"""Stage 2 of CMD (``model=cmd``): the content-frame diffusion model and the motion diffusion model, trained
on the latents of a frozen stage-1 autoencoder, and the sampling pipeline content -> motion -> decode.

Training: each clip is encoded by the frozen frame autoencoder (pixels, or SD-VAE latents) and then by the
frozen CMD autoencoder into its content frame ``(B, C, h, w)`` and motion latent ``(B, D, F, w'+h')``. The
content model learns the content frames as one-frame videos; the motion model learns the motion latents
with the clean content frame as in-context tokens (``cond.content_frame``). Each draws its own timesteps
and noise; the two losses are summed (the models share no parameters, so this is two independent
trainings in one optimizer step, with one EMA twin and one checkpoint).

Sampling (:meth:`CMDDiffusionModule.generate`): the content frame first, then the motion latent given it,
both with the run's sampler and classifier-free guidance on every eps channel (the content frame is kept in
the motion model's null condition: guidance acts on the class / text only); then the CMD decoder and the
frame decoder. The content frame is clipped to [-1, 1] in pixel space only (SD latents are not bounded),
the motion latent always (it is a tanh output).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from vidgen.autoencoders.base import batch_latents
from vidgen.conditioning import Cond
from vidgen.diffusion import ModelFn, build_sampler, guided_model_fn
from vidgen.lit.module import VideoDiffusionModule

_CMD_CHECKPOINT_KEY = "cmd_autoencoder_fingerprint"


class CMDDiffusionModule(VideoDiffusionModule):
    """:class:`VideoDiffusionModule` for CMD: ``denoiser`` is a :class:`~vidgen.models.cmd.denoisers.
    CMDDenoisers` and ``cmd_autoencoder`` the frozen stage-1 network; every other argument as there.

    Args:
        cmd_autoencoder: the frozen CMD autoencoder (``encode``, ``decode``, ``motion_shape``).
        cmd_autoencoder_fingerprint: what identifies it (architecture + a digest of its weights); stored in
            every checkpoint and compared on load, so a stage-2 checkpoint never runs on another autoencoder.
    """

    def __init__(
        self,
        *args: Any,
        cmd_autoencoder: nn.Module,
        cmd_autoencoder_fingerprint: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cmd_autoencoder = cmd_autoencoder.requires_grad_(False).eval()
        self.cmd_autoencoder_fingerprint = dict(cmd_autoencoder_fingerprint)
        channels, frames, height, width = self.latent_shape
        self.content_shape = (channels, 1, height, width)
        self.motion_shape = tuple(int(s) for s in cmd_autoencoder.motion_shape(frames))

    def train(self, mode: bool = True) -> CMDDiffusionModule:
        super().train(mode)
        self.cmd_autoencoder.eval()  # frozen: no dropout / norm updates whatever the trainer does
        return self

    @torch.no_grad()
    def encode_cmd(
        self, batch: dict[str, Any], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's ``video`` ``(B, C, F, H, W)`` (or its cached frame latents, ``data.cache``) -> (content
        ``(B, c, h, w)``, motion ``(B, D, F, w'+h')``); a cache holding them (``cmd_content`` / ``cmd_motion``,
        :func:`~vidgen.data.cache_key.caches_cmd_latents`) gives them as they are."""
        if "cmd_content" in batch:
            return batch["cmd_content"].to(self.device), batch["cmd_motion"].to(self.device)
        latents = batch_latents(self.autoencoder, batch, generator)
        content, motion = self.cmd_autoencoder.encode(latents)
        return content.detach(), motion.detach()

    def _diffusion_losses(
        self, denoiser: nn.Module, batch: dict[str, Any], generator: torch.Generator, train: bool
    ) -> dict[str, torch.Tensor]:
        """Per-sample ``{loss, content_loss, motion_loss, content_mse, motion_mse}: (B,)``: the two models'
        diffusion losses (own timesteps and noise each) and their sum."""
        self.diffusion.to(self.device)
        if "num_video_frames" in batch:
            raise ValueError("CMD does not train on appended images (data.joint_image_frames must be 0)")
        content, motion = self.encode_cmd(batch, generator)
        cond = self.conditioner(batch, train=train, generator=generator).to(self.device)
        batch_size = content.shape[0]
        losses: dict[str, torch.Tensor] = {}
        for name, x0, fn in (
            ("content", content[:, :, None], lambda x, tt: denoiser.content(x, tt, cond)),
            (
                "motion",
                motion,
                lambda x, tt: denoiser.motion(x, tt, replace(cond, content_frame=content)),
            ),
        ):
            t = self.diffusion.sample_timesteps(batch_size, generator=generator).to(self.device)
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(self.device)
            part = self.diffusion.training_losses(fn, x0, t, noise=noise)
            losses[f"{name}_loss"] = part["loss"]
            losses[f"{name}_mse"] = part["mse"]
        losses["loss"] = losses["content_loss"] + losses["motion_loss"]
        return losses

    def build_samplers(self, sampler_cfg: dict[str, Any]) -> tuple[Any, Any]:
        """The content sampler (x0 clipped in pixel space only: SD latents are unbounded) and the motion
        sampler (x0 clipped: the motion latent is a tanh output)."""
        pixel_content = self.latent_shape[2:] == self.video_shape[2:]  # frame autoencoder is the identity
        return (
            build_sampler(self.diffusion, **{**sampler_cfg, "clip_x0": pixel_content}),
            build_sampler(self.diffusion, **{**sampler_cfg, "clip_x0": True}),
        )

    def generate_batch(
        self,
        denoiser: nn.Module,
        cond: Cond,
        n: int,
        scale: float,
        samplers: Any,
        generator: torch.Generator,
        progress: bool,
    ) -> torch.Tensor:
        """``n`` videos in [-1, 1]: the content frame, then the motion latent given it (guidance on the
        class / text only: the null condition keeps the content frame), then the CMD and frame decoders."""
        content_sampler, motion_sampler = samplers
        null = self.conditioner.null(n, self.device)
        noise = torch.randn((n, *self.content_shape), generator=generator).to(self.device)
        content_fn = guided_model_fn(denoiser.content, cond, null, scale, self.learn_sigma)
        content = content_sampler.sample(content_fn, noise.shape, noise=noise, generator=generator)[:, :, 0]
        motion_fn = guided_model_fn(
            denoiser.motion,
            replace(cond, content_frame=content),
            replace(null, content_frame=content),
            scale,
            self.learn_sigma,
        )
        noise = torch.randn((n, *self.motion_shape), generator=generator).to(self.device)
        motion = motion_sampler.sample(motion_fn, noise.shape, noise=noise, generator=generator)
        latents = self.cmd_autoencoder.decode(content, motion.clamp(-1, 1))
        return self.autoencoder.decode(latents).clamp(-1, 1).float().cpu()

    def sampling_model_fn(self, denoiser: nn.Module, cond: Cond, num: int, scale: float) -> ModelFn:
        raise NotImplementedError(
            "CMD generates a whole clip from a content frame and a motion latent: there is no denoiser over "
            "the video's latents, so temporal extension, conditioning on given frames and super-resolution "
            "(extend.*, condition_video, superres.*) are not available for CMD checkpoints"
        )

    # ------------------------------------------------------------------ checkpoints
    def _frozen_prefixes(self) -> list[str]:
        return [*super()._frozen_prefixes(), "cmd_autoencoder."]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[_CMD_CHECKPOINT_KEY] = self.cmd_autoencoder_fingerprint

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_same_autoencoder(checkpoint.get(_CMD_CHECKPOINT_KEY), self.cmd_autoencoder_fingerprint)
        super().on_load_checkpoint(checkpoint)


def check_same_autoencoder(stored: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """A stage-2 checkpoint's autoencoder (``stored``) must be the one this run loaded (``current``)."""
    from vidgen.config.errors import ConfigError

    if stored is None:
        raise ConfigError(
            "cmd.autoencoder_ckpt", "the checkpoint records no CMD autoencoder: not a CMD checkpoint"
        )
    for key in sorted(set(stored) | set(current)):
        if stored.get(key) != current.get(key):
            raise ConfigError(
                "cmd.autoencoder_ckpt",
                f"the CMD autoencoder differs from the one the checkpoint was trained with: {key} is "
                f"{current.get(key)!r} here and {stored.get(key)!r} in the checkpoint",
            )
