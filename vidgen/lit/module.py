"""The generic LightningModule for latent / pixel video diffusion.

It owns the training step, EMA, validation and sampling, and knows nothing of any one architecture: the
denoiser, the frozen autoencoder, the conditioner and the diffusion process are handed in.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from vidgen.autoencoders.base import FrameAutoencoder, batch_latents, batch_size_of
from vidgen.conditioning import Cond, Conditioner
from vidgen.diffusion import Diffusion, ModelFn, build_sampler, guided_model_fn
from vidgen.lit.ema import ema_decay_at, ema_update, make_ema_copy
from vidgen.lit.lr_schedule import fit_length, schedule_clock, with_lr_schedule
from vidgen.lit.sampling_precision import sampling_autocast, split_sampling_precision
from vidgen.lit.seeding import step_generator

# random streams of one training step
_STREAM_TRAIN, _STREAM_VAL, _STREAM_SAMPLES = 0, 1, 2


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or Inf; training stops before any checkpoint of the broken state."""


class VideoDiffusionModule(L.LightningModule):
    """Train and sample a video diffusion model.

    Args:
        denoiser: ``forward(x (B,c,F,h,w), t (B,), cond) -> (B, c or 2c, F, h, w)``.
        autoencoder: frozen frame-wise autoencoder (identity for pixel space).
        conditioner: turns batches into :class:`Cond` (with condition dropout in training).
        diffusion: the training diffusion process (schedule, parameterisation, loss): a discrete
            :class:`~vidgen.diffusion.GaussianDiffusion` (the denoiser gets int64 steps) or the continuous-time
            :class:`~vidgen.diffusion.VDMDiffusion` (the denoiser gets the float log-SNR).
        video_shape: ``(C, F, H, W)`` of the generated videos in pixel space.
        sampler: sampler config (``name``, ``steps``, ``eta``, ``order``, ``clip_x0``).
        optim: AdamW settings (``lr``, ``weight_decay``, ``betas``, ``eps``).
        ema: ``enabled``, ``decay``, ``warmup``.
        samples: ``num_videos`` generated at each validation, ``fps``.
        guidance_scale: classifier-free guidance scale for generated samples.
        seed: base seed of the per-step random streams.
        samples_dir: where validation samples are written, as .mp4 (.png for one-frame samples); None: not
            written.
        config: the resolved run config (plain dict), stored in every checkpoint.
        compile: ``enabled``, ``mode``: ``torch.compile`` the denoiser when the trainer sets the model up.

    Under the FSDP strategy (:mod:`vidgen.lit.parallel`) the denoiser and its EMA twin are sharded block by
    block in :meth:`configure_model`; the frozen autoencoder / conditioner are left replicated.
    """

    def __init__(
        self,
        denoiser: nn.Module,
        autoencoder: FrameAutoencoder,
        conditioner: Conditioner,
        diffusion: Diffusion,
        video_shape: tuple[int, int, int, int],
        sampler: dict[str, Any],
        optim: dict[str, Any],
        ema: dict[str, Any],
        samples: dict[str, Any] | None = None,
        guidance_scale: float = 1.0,
        seed: int = 0,
        samples_dir: str | Path | None = None,
        config: dict[str, Any] | None = None,
        compile: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.autoencoder = autoencoder.requires_grad_(False)
        self.conditioner = conditioner
        self.diffusion = diffusion
        self.video_shape = tuple(int(s) for s in video_shape)
        self.latent_shape = autoencoder.latent_shape(self.video_shape)
        self.sampler_cfg = dict(sampler)
        self.optim_cfg = dict(optim)
        self.ema_cfg = dict(ema)
        self.samples_cfg = dict(samples or {"num_videos": 4, "fps": 8})
        self.guidance_scale = float(guidance_scale)
        self.seed = int(seed)
        self.samples_dir = Path(samples_dir) if samples_dir else None
        self.config = config
        self.compile_cfg = dict(compile or {"enabled": False, "mode": None})
        self._model_configured = False
        self.ema_denoiser = make_ema_copy(denoiser) if self.ema_cfg.get("enabled", True) else None
        self._val_losses: list[torch.Tensor] = []
        self._micro_losses: list[dict[str, torch.Tensor]] = []

    # ------------------------------------------------------------------ helpers
    @property
    def learn_sigma(self) -> bool:
        return bool(self.diffusion.learn_sigma)

    @property
    def sampling_denoiser(self) -> nn.Module:
        """EMA weights when kept (used for validation and sampling), else the training weights."""
        return self.ema_denoiser if self.ema_denoiser is not None else self.denoiser

    def num_denoiser_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.denoiser.parameters() if p.requires_grad or not trainable_only)

    def _accumulation(self) -> int:
        return int(self.trainer.accumulate_grad_batches) if self._trainer is not None else 1

    def _diffusion_losses(
        self, denoiser: nn.Module, batch: dict[str, Any], generator: torch.Generator, train: bool
    ) -> dict[str, torch.Tensor]:
        """Per-sample losses ``{loss, mse[, vb]}: (B,)`` of one batch, all randomness from ``generator``."""
        self.diffusion.to(self.device)  # no-op once the tables live on this device
        latents = batch_latents(self.autoencoder, batch, generator).detach()  # cached or encoded here
        cond = self.conditioner(batch, train=train, generator=generator).to(self.device)
        if "num_video_frames" in batch:  # image-video joint training: frames F.. are independent images
            cond = replace(
                cond, num_video_frames=int(torch.as_tensor(batch["num_video_frames"]).flatten()[0])
            )
        batch_size = latents.shape[0]
        # drawn on the generator's (CPU) device: a discrete chain's randint consumes the stream as it always did
        t = self.diffusion.sample_timesteps(batch_size, generator=generator).to(self.device)
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype).to(self.device)
        return self.diffusion.training_losses(lambda x, tt: denoiser(x, tt, cond), latents, t, noise=noise)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        accumulation = self._accumulation()
        micro_step = self.global_step * accumulation + batch_idx % accumulation
        generator = step_generator(self.seed, micro_step, self.global_rank, _STREAM_TRAIN)
        losses = self._diffusion_losses(self.denoiser, batch, generator, train=True)
        loss = losses["loss"].mean()
        if not torch.isfinite(loss):
            parts = ", ".join(f"{k}={v.mean().item():.4g}" for k, v in losses.items())
            raise NonFiniteLossError(
                f"training loss is not finite at step {self.global_step} ({parts}). Training stopped; no "
                "checkpoint of this state was written. Lower optim.lr, enable trainer.gradient_clip_val, or "
                "check the data (batch['video'] must be finite and in [-1, 1])."
            )
        losses = {k: v.detach().mean() for k, v in losses.items()}
        self._log_train_losses(losses, batch_idx, accumulation, batch_size_of(batch))
        return loss

    def _log_train_losses(
        self, losses: dict[str, torch.Tensor], batch_idx: int, accumulation: int, batch_size: int
    ) -> None:
        """Log ``train/*`` once per optimizer step: with gradient accumulation, the mean over its
        micro-batches (the loss of the effective batch), logged on the micro-batch that steps."""
        self._micro_losses.append(losses)
        if accumulation > 1 and (batch_idx + 1) % accumulation:
            return
        micro, self._micro_losses = self._micro_losses, []
        for key in micro[0]:
            value = torch.stack([m[key] for m in micro]).mean()
            self.log(f"train/{key}", value, prog_bar=key == "loss", batch_size=batch_size * len(micro))
        if self._trainer is not None and self.trainer.optimizers:
            self.log(
                "train/lr", float(self.trainer.optimizers[0].param_groups[0]["lr"]), batch_size=batch_size
            )

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Optimizer step, then the EMA update, so that both are in place before any callback (checkpoints)
        sees the step."""
        super().optimizer_step(*args, **kwargs)
        if self.ema_denoiser is not None:
            decay = ema_decay_at(self.global_step, float(self.ema_cfg["decay"]), bool(self.ema_cfg["warmup"]))
            ema_update(self.ema_denoiser, self.denoiser, decay)

    def configure_model(self) -> None:
        """Called by the trainer's strategy before the optimizers exist: shard under FSDP, then compile."""
        if self._model_configured:  # fit then validate/test call this hook again
            return
        self._model_configured = True
        mesh = getattr(self, "_device_mesh", None)
        if mesh is not None:
            from vidgen.lit.parallel import shard_denoiser

            data_parallel = mesh["data_parallel"]
            shard_denoiser(self.denoiser, data_parallel)
            if self.ema_denoiser is not None:
                shard_denoiser(
                    self.ema_denoiser, data_parallel, forward_only=True
                )  # same layout: the update stays local
        if self.compile_cfg.get("enabled"):
            # in place: parameter names (and so checkpoints) stay those of the plain module
            self.denoiser.compile(mode=self.compile_cfg.get("mode"))

    @property
    def is_sharded(self) -> bool:
        from vidgen.lit.parallel import is_sharded

        return is_sharded(self.denoiser)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = adamw(self.denoiser, self.optim_cfg)
        return with_lr_schedule(
            optimizer, self.optim_cfg, fit_length(self), schedule_clock(self, self.optim_cfg)
        )

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        generator = step_generator(self.seed, batch_idx, 0, _STREAM_VAL)  # same noise at every validation
        losses = self._diffusion_losses(self.sampling_denoiser, batch, generator, train=False)
        batch_size = batch_size_of(batch)
        for key, value in losses.items():
            self.log(
                f"val/{key}", value.mean(), batch_size=batch_size, sync_dist=True, prog_bar=key == "loss"
            )

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or int(self.samples_cfg.get("num_videos", 0)) <= 0:
            return
        videos = self.generate(
            int(self.samples_cfg["num_videos"]),
            generator=step_generator(self.seed, 0, 0, _STREAM_SAMPLES),  # same noise at every validation
        )
        if self.trainer.is_global_zero:
            self._publish_samples(videos, tag="samples", step=self.global_step)

    def _publish_samples(self, videos: torch.Tensor, tag: str, step: int) -> None:
        """Write ``videos (N, C, F, H, W)`` into ``samples_dir/step_<step>/`` (one file each + a grid: .mp4,
        or .png when ``F == 1``) and log them to TensorBoard (a video summary, or images when ``F == 1``)."""
        from vidgen.io.samples import write_samples
        from vidgen.io.video import auto_scale, upscale_nearest, video_to_uint8

        fps = int(self.samples_cfg.get("fps", 8))
        scale = auto_scale(videos.shape[-2], videos.shape[-1])
        if self.samples_dir is not None:
            write_samples(self.samples_dir / f"step_{step:07d}", videos, fps=fps, scale=scale)
        images = videos.shape[2] == 1
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if not hasattr(experiment, "add_images" if images else "add_video"):
                continue
            frames = torch.stack([upscale_nearest(video_to_uint8(v), scale) for v in videos])  # N F H W C
            if images:
                experiment.add_images(tag, frames[:, 0], global_step=step, dataformats="NHWC")
            else:
                experiment.add_video(tag, frames.permute(0, 1, 4, 2, 3), global_step=step, fps=fps)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(
        self,
        num_videos: int,
        *,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
        guidance_scale: float | None = None,
        sampler: dict[str, Any] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Generate ``num_videos`` videos ``(N, C, F, H, W)`` in [-1, 1] with the EMA weights.

        Args:
            generator: CPU generator for the start noise and the sampler's noise (reproducible samples).
            labels: ``(N,)`` class labels for class-conditional models (default: classes cycled).
            captions: ``N`` captions for text-conditional models.
            guidance_scale: classifier-free guidance scale (default: the module's).
            sampler: sampler config overriding the module's (``name``, ``steps``, ``precision``, ...).
            batch_size: videos per sampling batch (default: all at once).
        """
        scale = self.checked_guidance_scale(guidance_scale)
        self.diffusion.to(self.device)
        precision, sampler_cfg = split_sampling_precision(dict(sampler or self.sampler_cfg))
        samplers = self.build_samplers(sampler_cfg)
        denoiser = self.sampling_denoiser
        was_training = denoiser.training
        denoiser.eval()
        generator = generator if generator is not None else torch.Generator().manual_seed(self.seed)
        cond_all = self.conditioner.for_sampling(
            num_videos, device=self.device, labels=labels, captions=captions
        )
        batch_size = batch_size or num_videos
        videos = []
        with sampling_autocast(precision, self.device):
            for start in range(0, num_videos, batch_size):
                index = slice(start, min(start + batch_size, num_videos))
                cond: Cond = cond_all.select(index)
                n = index.stop - index.start
                videos.append(self.generate_batch(denoiser, cond, n, scale, samplers, generator, progress))
        denoiser.train(was_training)
        return torch.cat(videos, dim=0)

    def build_samplers(self, sampler_cfg: dict[str, Any]) -> Any:
        """What :meth:`generate_batch` samples with, built once per :meth:`generate` call: one sampler."""
        return build_sampler(self.diffusion, **sampler_cfg)

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
        """``n`` videos ``(n, C, F, H, W)`` in [-1, 1] on the CPU for the condition ``cond`` (the body of
        :meth:`generate`'s batch loop): start noise, sampling, frame decoding."""
        model_fn = self.sampling_model_fn(denoiser, cond, n, scale)
        noise = torch.randn((n, *self.latent_shape), generator=generator).to(self.device)
        latents = samplers.sample(model_fn, noise.shape, noise=noise, generator=generator, progress=progress)
        return self.autoencoder.decode(latents).clamp(-1, 1).float().cpu()

    def checked_guidance_scale(self, guidance_scale: float | None) -> float:
        """The classifier-free guidance scale to sample with (``None``: the module's), checked against the
        conditioner (a scale other than 1 needs a model trained with condition dropout)."""
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        if scale != 1.0 and not self.conditioner.supports_guidance:
            raise ValueError(
                f"guidance_scale={scale} needs a conditional model trained with condition dropout "
                "(conditioner.drop_prob > 0); use guidance_scale=1 for this model"
            )
        return scale

    def sampling_model_fn(self, denoiser: nn.Module, cond: Cond, num: int, scale: float) -> ModelFn:
        """``model_fn(x (num,c,F,h,w), t (num,)) -> raw output`` of ``denoiser`` for ``num`` samples with the
        condition ``cond``, under classifier-free guidance of strength ``scale`` (what every sampler of this
        module calls)."""
        return guided_model_fn(
            denoiser, cond, self.conditioner.null(num, self.device), scale, self.learn_sigma
        )

    # ------------------------------------------------------------------ checkpoints
    def _frozen_prefixes(self) -> list[str]:
        """State-dict prefixes of frozen, user-provided weights that checkpoints do not duplicate."""
        prefixes = ["autoencoder."]
        if not any(p.requires_grad for p in self.conditioner.parameters()):
            prefixes.append("conditioner.")
        return prefixes

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Under FSDP the strategy loads a resumed checkpoint into the sharded model itself, strictly and
        # before any hook could put the frozen weights back, so sharded runs keep them in the checkpoint.
        if not self.is_sharded:
            prefixes = tuple(self._frozen_prefixes())
            state = checkpoint["state_dict"]
            for key in [k for k in state if k.startswith(prefixes)]:
                del state[key]
        checkpoint["vidgen_config"] = self.config
        checkpoint["vidgen_num_denoiser_params"] = self.num_denoiser_params()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:  # the FSDP strategy has loaded (and removed) the weights already
            restore_frozen_weights(self, checkpoint["state_dict"])


#: device types of PyTorch's fused AdamW kernel that ``optim.fused`` uses
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def adamw(network: nn.Module, optim: dict[str, Any]) -> torch.optim.AdamW:
    """AdamW over ``network``'s trainable parameters with the ``optim`` settings (``lr``, ``weight_decay``,
    ``betas``, ``eps``, ``fused``). ``fused`` takes the fused kernel only where every parameter is a float
    tensor on one device of :data:`FUSED_ADAMW_DEVICES` (PyTorch's default implementation elsewhere)."""
    params = [p for p in network.parameters() if p.requires_grad]
    devices = {p.device.type for p in params}
    fused = (
        bool(optim.get("fused", True))
        and len(devices) == 1
        and devices <= set(FUSED_ADAMW_DEVICES)
        and all(p.dtype.is_floating_point and type(p.data) is torch.Tensor for p in params)
    )
    return torch.optim.AdamW(
        params,
        lr=float(optim["lr"]),
        weight_decay=float(optim.get("weight_decay", 0.0)),
        betas=tuple(optim.get("betas", (0.9, 0.999))),
        eps=float(optim.get("eps", 1e-8)),
        fused=fused or None,
    )


def restore_frozen_weights(module: VideoDiffusionModule, state: dict[str, torch.Tensor]) -> None:
    """Put the module's own frozen weights (autoencoder, frozen conditioner) back into a checkpoint state."""
    prefixes = tuple(module._frozen_prefixes())
    for key, value in module.state_dict().items():
        if key.startswith(prefixes) and key not in state:
            state[key] = value
