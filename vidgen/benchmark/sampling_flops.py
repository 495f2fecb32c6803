"""Sampling FLOPs per video, by stage, for any vidgen diffusion module: counted, never timed.

Convention. ``torch.utils.flop_counter.FlopCounterMode`` counts every matrix product (linear layers,
convolutions, attention's ``QK^T`` and ``AV``) with a multiply-accumulate (MAC) as **2 FLOPs**; element-wise
work (norms, activations, softmax, additions, the sampler's own update) is not counted. Attention is counted
through ``scaled_dot_product_attention``'s math path, which every device can count (the CPU's fused kernel
is not counted by the flop counter). MACs = FLOPs / 2 exactly: the convention of fvcore / thop, of DiT's
"Gflops" and, it seems, of CMD's paper (``/work/shared/reference/cmd.md`` §5.3). Reports give both.

Per video:

* a denoiser stage costs ``(FLOPs of one forward of one video) x (model calls of the sampler) x
  (guidance passes)``. The model calls are counted by running the configured sampler with a stand-in
  model that returns zeros (``sampler.steps`` for ddpm / ddim / dpmsolver; the Langevin corrector of
  vdm_ancestral adds its calls). Classifier-free guidance (``guidance_scale != 1``) runs one batched
  forward over ``[cond, null]``: two videos' worth, so 2 passes;
* each decoder runs once.

Stages: a :class:`~vidgen.lit.module.VideoDiffusionModule` has ``denoiser`` and ``frame_decode`` (the
frame autoencoder's decoder: SD's VAE, 0 for the identity); a
:class:`~vidgen.lit.cmd_module.CMDDiffusionModule` has ``content`` (the content-frame model), ``motion``
(the motion model), ``cmd_decode`` (the CMD autoencoder's decoder) and ``frame_decode``.

Nothing is computed on the meta device: :func:`build_counting_module` builds a composed config's module
there (no memory, no compute; Latte-XL, SD's U-Net and SD's VAE at 16x256x256 in seconds on a CPU), with
three substitutions, each stated in the notes of the result:

* the diffusion chain is built on the CPU (the sampler's call count needs its tables);
* SD's VAE is built from its folder's ``config.json``, or from Stable Diffusion's published
  ``AutoencoderKL`` config (:data:`SD_VAE_CONFIG`) when the folder is absent: "VAE: architecture only, no
  weights" (FLOPs do not depend on the weights);
* a text conditioner gives text states of its configured shape ``(max_length, text_dim)`` without building
  the text encoder (which runs once per caption and is not counted).

:func:`sampling_flops` also works on a module with real weights (the tests count tiny models on the CPU
that way and compare with a FlopCounterMode run of ``module.generate``); at paper sizes use the meta build.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_method
from omegaconf import DictConfig, open_dict

from vidgen.autoencoders import build_autoencoder
from vidgen.autoencoders.sd_vae import StableDiffusionVAE
from vidgen.conditioning import Cond
from vidgen.conditioning.base import Conditioner
from vidgen.conditioning.conditioners import build_conditioner
from vidgen.config.errors import ConfigError
from vidgen.diffusion import build_sampler
from vidgen.lit.module import VideoDiffusionModule
from vidgen.lit.sampling_precision import split_sampling_precision

__all__ = [
    "CONVENTION",
    "SD_VAE_CONFIG",
    "STAGE_LABELS",
    "ArchitectureOnlySDVAE",
    "SamplingFlops",
    "StageFlops",
    "TextStatesStandIn",
    "build_counting_module",
    "count_forward_flops",
    "count_model_calls",
    "counting_autoencoder",
    "counting_conditioner",
    "on_cpu",
    "sampling_flops",
    "timestep_input",
]

#: the counting convention, as reports state it
CONVENTION = (
    "torch FlopCounterMode: matrix products (linear, conv, attention QK^T and AV via SDPA's math path), "
    "1 multiply-accumulate = 2 FLOPs, element-wise ops not counted; MACs = FLOPs / 2"
)

#: stage key -> label, in report order
STAGE_LABELS: dict[str, str] = {
    "denoiser": "denoiser",
    "content": "content-frame model",
    "motion": "motion model",
    "cmd_decode": "CMD AE decode",
    "frame_decode": "frame decode (VAE)",
}

#: Stable Diffusion's VAE (diffusers ``AutoencoderKL``), the published ``vae/config.json`` of SD 1.x / 2.x
#: and of stabilityai/sd-vae-ft-ema (83,653,863 parameters). ``sample_size`` only matters for tiled
#: decoding, which is off.
SD_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


# --------------------------------------------------------------------------------------- counting


def count_forward_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of one call ``fn(*args, **kwargs)`` (see the module docstring for the convention).

    Runs under ``torch.no_grad`` with SDPA restricted to its math path, so attention is counted on every
    device (on the meta device nothing is computed)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def count_model_calls(
    diffusion: Any, sampler_cfg: dict[str, Any], shape: tuple[int, ...], out_channels: int
) -> int:
    """How many times the sampler of ``sampler_cfg`` calls its model for one sample of ``shape``
    ``(C, ...)``: the sampler is run on the CPU with a model that returns zeros ``(1, out_channels, ...)``
    (elementwise work only)."""
    calls = [0]

    def stand_in(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return torch.zeros((x.shape[0], out_channels, *x.shape[2:]), dtype=x.dtype)

    sampler = build_sampler(diffusion, **split_sampling_precision(sampler_cfg)[1])
    noise = torch.zeros((1, *shape))
    sampler.sample(stand_in, noise.shape, noise=noise, generator=torch.Generator().manual_seed(0))
    return calls[0]


@dataclass
class StageFlops:
    """One stage of sampling a video.

    Attributes:
        name: key of :data:`STAGE_LABELS`.
        forward_flops: FLOPs of one forward of the stage's network for one video.
        calls: forwards per video (model calls x guidance passes for a denoiser, 1 for a decoder).
    """

    name: str
    forward_flops: int
    calls: int

    @property
    def flops(self) -> int:
        """FLOPs per video."""
        return self.forward_flops * self.calls

    @property
    def macs(self) -> int:
        """Multiply-accumulates per video (FLOPs / 2)."""
        return self.flops // 2


@dataclass
class SamplingFlops:
    """The per-video sampling cost of a module, by stage.

    Attributes:
        stages: in sampling order.
        sampler: e.g. ``"ddim 50 steps"``.
        model_calls: sampler calls per denoiser stage (before guidance).
        guidance_scale: the scale counted with; ``guidance_passes`` is 2 unless it is 1.
        notes: what was substituted to count (architecture-only VAE, text-state stand-in, ...).
    """

    stages: list[StageFlops]
    sampler: str
    model_calls: int
    guidance_scale: float
    notes: list[str] = field(default_factory=list)

    @property
    def guidance_passes(self) -> int:
        return 1 if self.guidance_scale == 1.0 else 2

    @property
    def total_flops(self) -> int:
        return sum(stage.flops for stage in self.stages)

    @property
    def total_macs(self) -> int:
        return self.total_flops // 2

    def stage(self, name: str) -> StageFlops:
        """The stage called ``name`` (KeyError if this module has none)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: totals, each stage's one-forward FLOPs, calls, FLOPs and MACs, the settings."""
        return {
            "convention": CONVENTION,
            "sampler": self.sampler,
            "model_calls": self.model_calls,
            "guidance_scale": self.guidance_scale,
            "guidance_passes": self.guidance_passes,
            "total_flops": self.total_flops,
            "total_macs": self.total_macs,
            "stages": {
                s.name: {
                    "label": STAGE_LABELS[s.name],
                    "forward_flops": s.forward_flops,
                    "calls": s.calls,
                    "flops": s.flops,
                    "macs": s.macs,
                }
                for s in self.stages
            },
            "notes": list(self.notes),
        }


def _device(module: VideoDiffusionModule) -> torch.device:
    return next(module.denoiser.parameters()).device


def timestep_input(module: VideoDiffusionModule, device: torch.device) -> torch.Tensor:
    """A ``(1,)`` timestep as the module's denoiser takes it: an int64 step, or a float time / log-SNR."""
    model_time = getattr(module.diffusion, "model_time", "step")
    return torch.zeros(1, device=device, dtype=torch.int64 if model_time == "step" else torch.float32)


def _sampling_cond(module: VideoDiffusionModule, device: torch.device) -> Cond:
    """The condition of one generated video, as ``generate`` makes it (a caption for text models)."""
    captions = ["a video"] if getattr(module.conditioner, "text_dim", 0) else None
    return module.conditioner.for_sampling(1, device=device, captions=captions)


def sampling_flops(
    module: VideoDiffusionModule,
    *,
    guidance_scale: float | None = None,
    sampler: dict[str, Any] | None = None,
) -> SamplingFlops:
    """Count the FLOPs of generating one video with ``module`` (see the module docstring).

    Args:
        module: a :class:`VideoDiffusionModule` or a CMD module, on any device (the meta device computes
            nothing: :func:`build_counting_module`).
        guidance_scale: the classifier-free guidance scale (default: the module's); 1 = one pass per call.
        sampler: sampler config (default: the module's, ``name`` and ``steps``, ...).

    Returns:
        the stages (generic: ``denoiser``, ``frame_decode``; CMD: ``content``, ``motion``, ``cmd_decode``,
        ``frame_decode``), their sum, the settings, and the ``counting_note`` of every substituted part
        (:func:`build_counting_module`).
    """
    from vidgen.lit.cmd_module import CMDDiffusionModule

    if not isinstance(module, VideoDiffusionModule):
        raise TypeError(f"sampling FLOPs need a diffusion module, got {type(module).__name__}")

    scale = module.guidance_scale if guidance_scale is None else float(guidance_scale)
    passes = 1 if scale == 1.0 else 2
    sampler_cfg = dict(sampler or module.sampler_cfg)
    device = _device(module)
    denoiser = module.sampling_denoiser
    cond = _sampling_cond(module, device)
    t = timestep_input(module, device)
    latents = torch.zeros((1, *module.latent_shape), device=device)

    def calls(shape: tuple[int, ...]) -> int:
        out = 2 * shape[0] if module.learn_sigma else shape[0]
        return count_model_calls(module.diffusion, sampler_cfg, shape, out)

    stages = []
    if isinstance(module, CMDDiffusionModule):
        content = torch.zeros((1, *module.content_shape), device=device)  # (1, C, 1, h, w)
        motion = torch.zeros((1, *module.motion_shape), device=device)  # (1, D, F, w' + h')
        model_calls = calls(module.content_shape)
        motion_calls = calls(module.motion_shape)
        if motion_calls != model_calls:  # one sampler for both: never expected
            raise RuntimeError(f"content and motion samplers differ: {model_calls} vs {motion_calls} calls")
        motion_cond = replace(cond, content_frame=content[:, :, 0])
        stages += [
            StageFlops(
                "content", count_forward_flops(denoiser.content, content, t, cond), model_calls * passes
            ),
            StageFlops(
                "motion", count_forward_flops(denoiser.motion, motion, t, motion_cond), model_calls * passes
            ),
            StageFlops(
                "cmd_decode", count_forward_flops(module.cmd_autoencoder.decode, content[:, :, 0], motion), 1
            ),
        ]
    else:
        model_calls = calls(tuple(module.latent_shape))
        stages.append(
            StageFlops("denoiser", count_forward_flops(denoiser, latents, t, cond), model_calls * passes)
        )
    stages.append(StageFlops("frame_decode", count_forward_flops(module.autoencoder.decode, latents), 1))
    notes = [getattr(part, "counting_note", None) for part in (module.autoencoder, module.conditioner)]
    return SamplingFlops(
        stages=stages,
        sampler=f"{sampler_cfg.get('name')} {sampler_cfg.get('steps')} steps",
        model_calls=model_calls,
        guidance_scale=scale,
        notes=[note for note in notes if note],
    )


# --------------------------------------------------------------------------- building for counting


class ArchitectureOnlySDVAE(StableDiffusionVAE):
    """Stable Diffusion's frame-wise VAE with the architecture of ``config`` and no weights loaded (for
    counting FLOPs on the meta device); ``encode`` / ``decode`` are :class:`StableDiffusionVAE`'s.

    Args:
        config: diffusers ``AutoencoderKL`` keyword arguments (:data:`SD_VAE_CONFIG`, or a folder's
            ``config.json``).
        counting_note: what the architecture is, for the report.
        scaling_factor, micro_batch, latent_channels, downsample: as :class:`StableDiffusionVAE`.
    """

    def __init__(
        self,
        config: dict[str, Any],
        counting_note: str,
        scaling_factor: float = 0.18215,
        micro_batch: int = 32,
        latent_channels: int = 4,
        downsample: int = 8,
    ) -> None:
        from diffusers import AutoencoderKL

        torch.nn.Module.__init__(self)  # StableDiffusionVAE.__init__ would load weights from a folder
        self.vae = AutoencoderKL(**config).requires_grad_(False).eval()
        self.latent_channels = int(self.vae.config.latent_channels)
        self.downsample = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if (self.latent_channels, self.downsample) != (int(latent_channels), int(downsample)):
            raise ConfigError(
                "autoencoder.latent_channels",
                f"the VAE architecture has {self.latent_channels} latent channels and downsamples by "
                f"{self.downsample}; the config says {latent_channels} and {downsample}",
            )
        self.scaling_factor = float(scaling_factor)
        self.sample_posterior = False
        self.micro_batch = int(micro_batch)
        self.counting_note = counting_note


def _vae_config_folder(path: Path, subfolder: str | None) -> Path | None:
    """The folder holding the VAE's ``config.json`` as :func:`~vidgen.autoencoders.sd_vae.
    load_autoencoder_kl` finds it, or None."""
    candidates = [path.parent / subfolder if subfolder else path.parent] if path.is_file() else []
    if path.is_dir():
        candidates = [path / subfolder] if subfolder else [path, path / "vae"]
    return next((folder for folder in candidates if (folder / "config.json").is_file()), None)


def counting_autoencoder(
    kind: str,
    latent_channels: int,
    downsample: int = 1,
    scaling_factor: float = 1.0,
    path: str | None = None,
    subfolder: str | None = None,
    sample_posterior: bool = False,
    micro_batch: int = 0,
) -> Any:
    """:func:`~vidgen.autoencoders.build_autoencoder` for counting (same arguments): the identity as it is;
    SD's VAE as :class:`ArchitectureOnlySDVAE`, from the folder's ``config.json`` when there is one, else
    from :data:`SD_VAE_CONFIG` (labelled "architecture only, no weights")."""
    if kind != "sd_vae":
        return build_autoencoder(
            kind=kind,
            latent_channels=latent_channels,
            downsample=downsample,
            scaling_factor=scaling_factor,
            path=path,
            subfolder=subfolder,
            sample_posterior=sample_posterior,
            micro_batch=micro_batch,
        )
    from diffusers import AutoencoderKL

    folder = _vae_config_folder(Path(str(path)), subfolder) if path else None
    if folder is None:
        config = {**SD_VAE_CONFIG, "latent_channels": int(latent_channels)}
        note = (
            "VAE: architecture only, no weights (Stable Diffusion's published AutoencoderKL config: "
            f"autoencoder.path '{path}' is absent)"
        )
    else:
        config = dict(AutoencoderKL.load_config(str(folder)))
        note = f"VAE: architecture of {folder / 'config.json'}, no weights loaded"
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return ArchitectureOnlySDVAE(config, note, scaling_factor, micro_batch, latent_channels, downsample)


class TextStatesStandIn(Conditioner):
    """A text conditioner's shapes without its encoder (for counting): ``Cond(text (n, L, D) zeros,
    text_mask (n, L) all True, pooled_text (n, D) zeros)`` for any caption, with ``L = max_length`` and
    ``D = text_dim``. The denoiser's FLOPs depend on these shapes only."""

    def __init__(self, text_dim: int, max_length: int = 77, drop_prob: float = 0.1) -> None:
        super().__init__()
        self.text_dim = int(text_dim)
        self.max_length = int(max_length)
        self.drop_prob = float(drop_prob)
        self.counting_note = (
            f"text: states of shape ({self.max_length}, {self.text_dim}) stand in for the text encoder's, "
            "which runs once per caption and is not counted"
        )

    @property
    def supports_guidance(self) -> bool:
        return self.drop_prob > 0

    def _states(self, n: int, device: torch.device | str) -> Cond:
        return Cond(
            text=torch.zeros((n, self.max_length, self.text_dim), device=device),
            text_mask=torch.ones((n, self.max_length), dtype=torch.bool, device=device),
            pooled_text=torch.zeros((n, self.text_dim), device=device),
        )

    def forward(
        self, batch: dict[str, Any], train: bool = False, generator: torch.Generator | None = None
    ) -> Cond:
        return self._states(len(batch["caption"]), batch["video"].device)

    def null(self, n: int, device: torch.device | str = "cpu") -> Cond:
        return self._states(n, device)

    def for_sampling(
        self,
        n: int,
        device: torch.device | str = "cpu",
        labels: torch.Tensor | None = None,
        captions: list[str] | None = None,
    ) -> Cond:
        return self._states(n, device)


def counting_conditioner(kind: str, **kwargs: Any) -> Conditioner:
    """:func:`~vidgen.conditioning.conditioners.build_conditioner` for counting (same arguments): a text
    conditioner becomes :class:`TextStatesStandIn`; the others are built as they are."""
    if kind == "text":
        return TextStatesStandIn(
            int(kwargs["text_dim"]), int(kwargs.get("max_length", 77)), float(kwargs.get("drop_prob", 0.1))
        )
    return build_conditioner(kind, **kwargs)


def on_cpu(target: str, **kwargs: Any) -> Any:
    """``target(**kwargs)`` built on the CPU, also inside a ``torch.device("meta")`` context (the diffusion
    chain: the sampler's call count reads its tables)."""
    with torch.device("cpu"):
        return get_method(target)(**kwargs)


def build_counting_module(cfg: DictConfig) -> VideoDiffusionModule:
    """The module of a composed config (``build_module``) on the meta device, for :func:`sampling_flops`.

    A copy of ``cfg`` is built with the substitutions of the module docstring (``autoencoder``,
    ``conditioner`` and ``diffusion`` targets replaced by :func:`counting_autoencoder`,
    :func:`counting_conditioner` and :func:`on_cpu`); then every parameter and buffer is moved to the meta
    device (weights loaded from a folder, e.g. ``model.pretrained_path``, are dropped). The substituted
    parts carry a ``counting_note`` that :func:`sampling_flops` reports.

    Raises:
        ConfigError: ``cmd.autoencoder_ckpt`` naming a checkpoint (its weights digest cannot be taken on the
            meta device): count with ``cmd.autoencoder_ckpt=untrained`` and the checkpoint's
            ``cmd.untrained_size``.
    """
    from vidgen.config.schema import CMD_UNTRAINED_AUTOENCODER as UNTRAINED_AUTOENCODER
    from vidgen.lit.build import build_module

    cfg = copy.deepcopy(cfg)
    target = str(cfg.model._target_).rsplit(".", 1)[-1]
    if target == "CMDDenoisers" and str(cfg.cmd.autoencoder_ckpt) != UNTRAINED_AUTOENCODER:
        raise ConfigError(
            "cmd.autoencoder_ckpt",
            "FLOPs are counted on the meta device, without weights: count with cmd.autoencoder_ckpt=untrained "
            "and the checkpoint's size (cmd.untrained_size)",
        )
    with open_dict(cfg):
        cfg.autoencoder._target_ = f"{__name__}.counting_autoencoder"
        cfg.conditioner._target_ = f"{__name__}.counting_conditioner"
        cfg.diffusion.target = str(cfg.diffusion._target_)
        cfg.diffusion._target_ = f"{__name__}.on_cpu"
    with torch.device("meta"):
        module = build_module(cfg)
    return module.to("meta")
