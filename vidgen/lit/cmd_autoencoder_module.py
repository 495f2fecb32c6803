"""Stage 1 of CMD: train the content-frame / motion-latent video autoencoder (``model=cmd_ae``).

The autoencoder network (:class:`~vidgen.models.cmd.autoencoder.CMDAutoencoder`) works on what the frozen
frame autoencoder gives: pixels (``autoencoder=identity``) or SD-VAE latents (``autoencoder=sd_vae``). Its
loss is the paper's l2 reconstruction loss on those inputs (``cmd.loss=l2``), the L1 term of the release's
pixel loss alone (``cmd.loss=l1``), or the release's whole pixel loss (``cmd.loss=l1_lpips``: 4 L1 over the
clip + 4 LPIPS-VGG on one random frame per clip; its GAN terms are off until step 1e7 in the release and are
not built), which needs VGG16's ImageNet weights as a local file (``cmd.lpips_vgg_weights``). Validation logs the loss and the PSNR of the reconstructions in pixel space
(after the frame decoder), and writes input | reconstruction side by side. A finished run writes the
reconstructions of evaluation clips and, with ``evaluation.at_end``, scores them with the run's metrics
(the reconstruction FVD of the paper's ablation when the metric is FVD).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from vidgen.autoencoders.base import FrameAutoencoder, batch_latents
from vidgen.lit.lr_schedule import fit_length, schedule_clock, with_lr_schedule
from vidgen.lit.module import NonFiniteLossError, adamw, restore_frozen_weights
from vidgen.lit.seeding import step_generator

#: ``cmd.loss`` values
AUTOENCODER_LOSSES = ("l2", "l1", "l1_lpips")
#: the release's weights of its two pixel-loss terms (reconstruction/lossperceptual.py)
RELEASE_L1_WEIGHT = RELEASE_LPIPS_WEIGHT = 4.0


def psnr(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of videos ``(B, C, F, H, W)`` in [-1, 1] (peak-to-peak 2)."""
    mse = (reference.float() - estimate.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(4.0 / mse)


class CMDAutoencoderModule(L.LightningModule):
    """Train a CMD autoencoder on (frame-autoencoded) videos.

    Args:
        network: the CMD autoencoder, ``forward(x (B,c,F,h,w)) -> (recon, content (B,c,h,w),
            motion (B,D,F,w'+h'))``.
        frame_autoencoder: frozen frame-wise autoencoder (identity for pixel space).
        video_shape: ``(C, F, H, W)`` of the videos in pixel space.
        loss: ``l2`` (paper), ``l1`` or ``l1_lpips`` (the release's pixel loss; needs ``lpips``).
        lpips: frozen LPIPS network ``lpips(a, b) -> (N, 1, 1, 1)`` for ``l1_lpips``
            (:func:`vidgen.metrics.lpips.build_lpips_vgg`).
        seed: base seed of the frame each clip's LPIPS term looks at.
        optim: AdamW settings (``lr``, ``weight_decay``, ``betas``, ``eps``).
        samples: ``num_videos`` reconstructed at each validation, ``fps``.
        samples_dir: where the validation reconstructions go; None: not written.
        config: the resolved run config, stored in every checkpoint.
    """

    is_reconstruction_model = True

    def __init__(
        self,
        network: nn.Module,
        frame_autoencoder: FrameAutoencoder,
        video_shape: tuple[int, int, int, int],
        loss: str = "l2",
        optim: dict[str, Any] | None = None,
        samples: dict[str, Any] | None = None,
        samples_dir: str | Path | None = None,
        config: dict[str, Any] | None = None,
        lpips: nn.Module | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if loss not in AUTOENCODER_LOSSES:
            raise ValueError(f"cmd.loss must be one of {AUTOENCODER_LOSSES}, got {loss!r}")
        if (loss == "l1_lpips") != (lpips is not None):
            raise ValueError("cmd.loss=l1_lpips needs an LPIPS network, and only it uses one")
        self.lpips = lpips.requires_grad_(False).eval() if lpips is not None else None
        self.seed = int(seed)
        self.network = network
        self.frame_autoencoder = frame_autoencoder.requires_grad_(False)
        self.video_shape = tuple(int(s) for s in video_shape)
        self.loss_name = loss
        self.optim_cfg = dict(optim or {"lr": 1e-4})
        self.samples_cfg = dict(samples or {"num_videos": 4, "fps": 8})
        self.samples_dir = Path(samples_dir) if samples_dir else None
        self.config = config
        self._val_videos: torch.Tensor | None = None

    # ------------------------------------------------------------------ helpers
    def num_denoiser_params(self, trainable_only: bool = True) -> int:
        """Trainable parameters of the autoencoder network (the name the training entry prints)."""
        return sum(p.numel() for p in self.network.parameters() if p.requires_grad or not trainable_only)

    @property
    def is_sharded(self) -> bool:
        return False

    def _inputs(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What the network reconstructs: the frame autoencoder's latents (pixels for identity); a VAE that
        samples its posterior draws from ``generator`` (the step's, so a resumed run draws the same)."""
        return self.frame_autoencoder.encode(video, generator=generator).detach()

    def _loss(self, inputs: torch.Tensor, recon: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-sample reconstruction loss ``(B,)``; ``generator`` picks the LPIPS frame of each clip."""
        error = recon.float() - inputs.float()
        if self.loss_name == "l2":
            return error.pow(2).flatten(1).mean(1)
        l1 = error.abs().flatten(1).mean(1)
        if self.lpips is None:
            return l1
        batch, _, frames = inputs.shape[:3]
        index = torch.randint(frames, (batch,), generator=generator).to(inputs.device)
        rows = torch.arange(batch, device=inputs.device)
        frame, recon_frame = (v.transpose(1, 2)[rows, index].float() for v in (inputs, recon))  # (B, C, H, W)
        perceptual = self.lpips(frame, recon_frame).reshape(batch)
        return RELEASE_L1_WEIGHT * l1 + RELEASE_LPIPS_WEIGHT * perceptual

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Videos ``(B, C, F, H, W)`` in [-1, 1] -> their reconstructions, in [-1, 1] pixel space
        (``generator``: the frame VAE's posterior draws, when it samples them)."""
        was_training = self.network.training
        self.network.eval()
        recon, _, _ = self.network(self._inputs(video.to(self.device), generator))
        self.network.train(was_training)
        return self.frame_autoencoder.decode(recon).clamp(-1, 1).float()

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        generator = step_generator(self.seed, self.global_step, self.global_rank, 0)
        inputs = batch_latents(self.frame_autoencoder, batch, generator).detach()  # data.cache: no encoding
        recon, _, _ = self.network(inputs)
        loss = self._loss(inputs, recon, generator).mean()
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"autoencoder loss is not finite at step {self.global_step}; lower optim.lr or check the data"
            )
        self.log("train/loss", loss, prog_bar=True, batch_size=inputs.shape[0])
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimizer = adamw(self.network, self.optim_cfg)
        return with_lr_schedule(
            optimizer, self.optim_cfg, fit_length(self), schedule_clock(self, self.optim_cfg)
        )

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = batch["video"]
        generator = step_generator(self.seed, batch_idx, 0, 1)  # the same draws at every validation
        inputs = self._inputs(video, generator)
        recon, _, motion = self.network(inputs)
        batch_size = video.shape[0]
        loss = self._loss(inputs, recon, generator).mean()
        self.log("val/loss", loss, batch_size=batch_size, sync_dist=True)
        pixels = self.frame_autoencoder.decode(recon).clamp(-1, 1)
        self.log("val/psnr", psnr(video, pixels).mean(), batch_size=batch_size, sync_dist=True, prog_bar=True)
        # how much the motion latent moves over time: 0 would mean the decoder sees a static video
        self.log(
            "val/motion_time_std", motion.float().std(dim=2).mean(), batch_size=batch_size, sync_dist=True
        )
        if batch_idx == 0:
            self._val_videos = video[: int(self.samples_cfg.get("num_videos", 0))].detach()

    def on_validation_epoch_end(self) -> None:
        videos, self._val_videos = self._val_videos, None
        if (
            self.trainer.sanity_checking
            or videos is None
            or not len(videos)
            or not self.trainer.is_global_zero
        ):
            return
        if self.samples_dir is not None:
            self.write_reconstructions(self.samples_dir / f"step_{self.global_step:07d}", videos)

    def write_reconstructions(self, folder: Path, videos: torch.Tensor) -> None:
        """Write each clip of ``videos (N, C, F, H, W)`` beside its reconstruction (input left) as .mp4."""
        from vidgen.io.samples import write_samples
        from vidgen.io.video import auto_scale

        recon = self.reconstruct(videos, step_generator(self.seed, 0, 0, 2))
        pairs = torch.cat([videos.float().cpu(), recon.cpu()], dim=-1)  # side by side
        write_samples(
            folder, pairs, fps=int(self.samples_cfg.get("fps", 8)), scale=auto_scale(*pairs.shape[-2:])
        )

    # ------------------------------------------------------------------ checkpoints
    def _frozen_prefixes(self) -> list[str]:
        """State-dict prefixes of frozen, user-provided weights (the SD VAE, LPIPS) that checkpoints do not
        hold."""
        return ["frame_autoencoder.", "lpips."]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(tuple(self._frozen_prefixes()))]:
            del state[key]
        checkpoint["vidgen_config"] = self.config
        checkpoint["vidgen_num_denoiser_params"] = self.num_denoiser_params()
        arch = getattr(self.network, "arch_config", None)
        checkpoint["cmd_autoencoder_arch"] = arch() if callable(arch) else None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "state_dict" in checkpoint:
            restore_frozen_weights(self, checkpoint["state_dict"])
