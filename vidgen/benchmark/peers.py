"""vidgen's Latte training step timed side by side with its peers, in one process
(``python -m vidgen.bench 'bench.peers=[official,diffusers]' bench.official_latte=/path/to/models/latte.py``).

Peers of the composed vidgen Latte (variant 1: interleaved spatial / temporal blocks, S-AdaLN, frame patches,
absolute temporal table; unconditional or class-conditional), each built at the same depth, width, heads,
patch, latent size, frames, channels and ``learn_sigma``:

* ``official``: the official Latte code (github.com/Vchitect/Latte, ``models/latte.py``, class ``Latte``),
  imported with importlib from the user's local copy named by ``bench.official_latte`` (not vendored; null
  skips it with a note). It takes ``(B, F, C, H, W)``, frames before channels: :class:`OfficialLatteAdapter`
  gives it vidgen's ``(B, C, F, H, W)`` and turns its output back. ``extras=1`` (unconditional) or ``2``
  (class labels), ``attention_mode`` from ``bench.official_attention`` (``math``: its default and training
  setting).
* ``diffusers``: ``diffusers.LatteTransformer3DModel`` set up like the released Latte-1 transformer
  (``ada_norm_single``, ``gelu-approximate``, biased attention, non-affine norms with eps 1e-6) at vidgen's
  sizes, ``num_layers = depth / 2`` spatial + temporal pairs and no cross-attention
  (``cross_attention_dim=None``). Its forward always runs the caption projection: it gets a dummy zero text
  state ``(B, 1, 1)`` that no block reads (:class:`DiffusersLatteAdapter`). It has no class-label input.

Per model: trainable parameters; FLOPs of a training step's forward and forward + backward, counted with
``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy (no compute; SDPA through its math path so
the CPU's fused kernel is counted too, the official attention counted as ``math``: the same FLOPs as
``flash``); and the timed step: forward, MSE against a fixed random target, backward, one plain AdamW step
(:func:`vidgen.lit.module.adamw`, the config's ``optim``) and ``zero_grad(set_to_none=True)``, on the same
random ``(x_t, t[, labels], target)`` for every model. Every model is built in this one process; each runs
``bench.warmup_steps`` warm-up steps, then ``bench.train_steps`` timed rounds go round-robin (vidgen,
official, diffusers, vidgen, ...), and the median step time per model and ``peer / vidgen`` ratios (above 1:
vidgen is faster) are reported. With ``compile.enabled=true`` vidgen's model is timed compiled
(``torch.compile`` in place, ``compile.mode``, as training compiles its denoiser) and, with
``bench.compile_peers=true``, every peer as well (the equal-treatment comparison); the first warm-up step of a
compiled model compiles it. Speed targets live in the bench output, never in tests.
"""

from __future__ import annotations

import copy
import importlib.util
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig
from torch import nn

from vidgen.benchmark.measure import _autocast, _synchronize
from vidgen.conditioning import Cond
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.lit.cpu_precision import warn_if_slow_bf16
from vidgen.lit.module import adamw
from vidgen.models.latte import LATTE_SIZES, Latte
from vidgen.runtime import pick_device

__all__ = [
    "OFFICIAL_ATTENTION_MODES",
    "PEERS",
    "VIDGEN",
    "Contender",
    "DiffusersLatteAdapter",
    "LatteArch",
    "OfficialLatteAdapter",
    "StepInputs",
    "VidgenLatteAdapter",
    "build_diffusers",
    "build_official",
    "build_vidgen",
    "checked_peers",
    "compiled_names",
    "count_step_flops",
    "format_peers",
    "load_official_module",
    "run_peers",
    "summarise_times",
    "time_round_robin",
]

#: the peers ``bench.peers`` may list, in the order they are reported
PEERS = ("official", "diffusers")
#: the official code's ``attention_mode`` values (``bench.official_attention``)
OFFICIAL_ATTENTION_MODES = ("math", "flash", "xformers")
#: the name of vidgen's row, the reference of every ratio
VIDGEN = "vidgen"

STEP = (
    "forward + MSE on a fixed random target + backward + AdamW step (vidgen.lit.module.adamw, the config's "
    "optim) + zero_grad(set_to_none=True); the same random (x_t, t[, labels], target) for every model "
    "(vidgen's noising, conditioner and hybrid loss are not in it: `vidgen.bench` without peers times those)"
)
FLOPS = (
    "FlopCounterMode on a meta-device copy: matmuls, convolutions and attention (SDPA via its math path, the "
    "official attention counted as `math`, the same FLOPs as `flash`), a multiply-add = 2 FLOPs; element-wise "
    "work and the optimizer step not counted. GFLOPs / step = forward + backward"
)


@dataclass(frozen=True)
class LatteArch:
    """The sizes every peer is built at: those of the composed vidgen Latte."""

    size: str
    depth: int
    hidden_size: int
    num_heads: int
    patch_size: int
    in_channels: int
    out_channels: int
    input_size: int
    num_frames: int
    mlp_ratio: float
    learn_sigma: bool
    num_classes: int
    label_drop_prob: float

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """``(C, F, H, W)`` of one latent clip."""
        return (self.in_channels, self.num_frames, self.input_size, self.input_size)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """``(C_out, F, H, W)`` of the denoiser's output for one clip."""
        return (self.out_channels, self.num_frames, self.input_size, self.input_size)


@dataclass
class Contender:
    """One model of the comparison: ``module.forward(x (B, C, F, H, W), t (B,), labels (B,) | None)`` returns
    ``(B, C_out, F, H, W)``."""

    name: str
    module: nn.Module
    implementation: str
    notes: list[str] = field(default_factory=list)


@dataclass
class StepInputs:
    """The random training-step inputs every model gets."""

    x: torch.Tensor
    t: torch.Tensor
    labels: torch.Tensor | None
    target: torch.Tensor

    @classmethod
    def random(cls, arch: LatteArch, batch_size: int, num_timesteps: int, seed: int) -> StepInputs:
        generator = torch.Generator().manual_seed(seed)
        labels = None
        if arch.num_classes:
            labels = torch.randint(0, arch.num_classes, (batch_size,), generator=generator)
        return cls(
            x=torch.randn((batch_size, *arch.latent_shape), generator=generator),
            t=torch.randint(0, num_timesteps, (batch_size,), generator=generator),
            labels=labels,
            target=torch.randn((batch_size, *arch.output_shape), generator=generator),
        )

    def to(self, device: torch.device | str) -> StepInputs:
        return StepInputs(
            x=self.x.to(device),
            t=self.t.to(device),
            labels=None if self.labels is None else self.labels.to(device),
            target=self.target.to(device),
        )


# ------------------------------------------------------------------------------------------------ adapters
class VidgenLatteAdapter(nn.Module):
    """vidgen's Latte behind the peers' ``forward(x, t, labels)``."""

    def __init__(self, model: Latte) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, t, None if labels is None else Cond(labels=labels))


class OfficialLatteAdapter(nn.Module):
    """The official ``Latte`` on vidgen's layout: ``x (B, C, F, H, W)`` is handed over as ``(B, F, C, H, W)``
    and the output ``(B, F, C_out, H, W)`` comes back as ``(B, C_out, F, H, W)`` (both transposes are views;
    the official forward's own rearrange copies the input). Labels go in as ``y`` when the model was built
    class-conditional (``extras=2``)."""

    def __init__(self, model: nn.Module, class_conditional: bool) -> None:
        super().__init__()
        self.model = model
        self.class_conditional = class_conditional

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        y = labels if self.class_conditional else None
        return self.model(x.transpose(1, 2), t, y=y).transpose(1, 2)


class DiffusersLatteAdapter(nn.Module):
    """``LatteTransformer3DModel`` behind ``forward(x, t, labels)``: it takes ``(B, C, F, H, W)`` itself; its
    forward always projects ``encoder_hidden_states``, so it gets a zero ``(B, 1, caption_channels)`` state
    that no block reads (built with ``cross_attention_dim=None``); labels are not used (no label input)."""

    def __init__(self, model: nn.Module, caption_channels: int = 1) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("text", torch.zeros(1, 1, caption_channels), persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        text = self.text.expand(x.shape[0], -1, -1).to(x.dtype)
        return self.model(x, t, encoder_hidden_states=text, return_dict=False)[0]


# ------------------------------------------------------------------------------------------------ checks
def checked_peers(cfg: DictConfig) -> list[str]:
    """``bench.peers`` as a list of known, distinct peer names (in :data:`PEERS` order).

    Raises:
        ConfigError: ``bench.peers`` not a list, an unknown or repeated name, or beside ``bench.compare``;
            ``bench.official_attention`` not one of :data:`OFFICIAL_ATTENTION_MODES`.
    """
    raw = cfg.bench.get("peers") or []
    if not isinstance(raw, list | tuple | ListConfig):
        raise ConfigError("bench.peers", f"a list of peers ({', '.join(PEERS)}), got {raw!r}")
    names = [str(name) for name in raw]
    for name in names:
        if name not in PEERS:
            raise ConfigError("bench.peers", f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    if len(set(names)) != len(names):
        raise ConfigError("bench.peers", f"a peer is listed twice: {names}")
    if cfg.bench.get("compare"):
        raise ConfigError(
            "bench.peers",
            "bench.peers times one vidgen Latte against its peers; it does not combine with bench.compare",
        )
    attention = str(cfg.bench.get("official_attention") or "math")
    if attention not in OFFICIAL_ATTENTION_MODES:
        raise ConfigError(
            "bench.official_attention",
            f"unknown attention mode {attention!r}; choose from {', '.join(OFFICIAL_ATTENTION_MODES)}",
        )
    return [name for name in PEERS if name in names]


def _check_latte_target(cfg: DictConfig) -> None:
    target = str(cfg.model.get("_target_", ""))
    if target.rsplit(".", 1)[-1] != "Latte":
        raise ConfigError(
            "bench.peers",
            f"the peers are Latte implementations: they need a vidgen Latte model (model=latte_v1), "
            f"got model {target!r}",
        )


def _check_peerable(model: Latte, names: list[str], mlp_ratio: float) -> None:
    """Raise a ConfigError naming ``bench.peers`` when the vidgen Latte has a design the peers lack."""
    mismatches = []
    if model.variant != 1:
        mismatches.append(f"model.variant={model.variant} (the peers are variant 1, interleaved)")
    if model.depth % 2:
        mismatches.append(f"depth {model.depth} is odd (the peers stack spatial + temporal pairs)")
    for key, value, wanted in (
        ("patch_embed", model.patch_embed, "frame"),
        ("injection", model.injection, "adaln"),
        ("temporal_position", model.temporal_position, "absolute"),
    ):
        if value != wanted:
            mismatches.append(f"model.{key}={value} (the peers: {wanted})")
    if model.text_dim:
        mismatches.append(
            f"model.text_dim={model.text_dim} (text conditioning: the official Latte-T2V is another model, "
            "and the peers here are unconditional or class-conditional)"
        )
    if model.grid_size[0] != model.grid_size[1]:
        mismatches.append(f"non-square latent {model.input_size} (the peers take square frames)")
    if model.gradient_checkpointing:
        mismatches.append("model.gradient_checkpointing=true (the official Latte has none)")
    if "diffusers" in names and float(mlp_ratio) != 4.0:
        mismatches.append(f"model.mlp_ratio={mlp_ratio} (diffusers' feed-forward is 4x wide)")
    if mismatches:
        raise ConfigError("bench.peers", "no peer for this Latte: " + "; ".join(mismatches))


# ------------------------------------------------------------------------------------------------ builders
def build_vidgen(cfg: DictConfig, names: list[str]) -> tuple[Contender, LatteArch]:
    """The composed vidgen Latte (checked to have peers) and the sizes the peers are built at."""
    _check_latte_target(cfg)
    model = instantiate_node(cfg.model)
    mlp_ratio = float(cfg.model.get("mlp_ratio", 4.0))
    _check_peerable(model, names, mlp_ratio)
    arch = LatteArch(
        size=str(model.size),
        depth=model.depth,
        hidden_size=model.hidden_size,
        num_heads=model.num_heads,
        patch_size=model.patch_size,
        in_channels=model.in_channels,
        out_channels=model.out_channels,
        input_size=model.grid_size[0] * model.patch_size,
        num_frames=model.num_frames,
        mlp_ratio=mlp_ratio,
        learn_sigma=model.learn_sigma,
        num_classes=model.num_classes,
        label_drop_prob=float(cfg.conditioner.get("drop_prob", 0.0) or 0.0),
    )
    notes = [
        f"vidgen.models.latte.Latte, size {arch.size}, variant 1, depth {arch.depth}, hidden "
        f"{arch.hidden_size}, {arch.num_heads} heads, patch {arch.patch_size}; attention via SDPA"
    ]
    return Contender(VIDGEN, VidgenLatteAdapter(model), "vidgen.models.latte.Latte", notes), arch


def load_official_module(path: str | Path) -> ModuleType:
    """Import the official ``models/latte.py`` from a local file (importlib, not on ``sys.path``).

    Raises:
        ConfigError: ``bench.official_latte``: no such file, it fails to import, or it has no ``Latte`` class.
    """
    file = Path(str(path)).expanduser()
    if not file.is_file():
        raise ConfigError(
            "bench.official_latte",
            f"no file {file}: give the path of a local copy of the official Latte's models/latte.py "
            "(git clone https://github.com/Vchitect/Latte)",
        )
    spec = importlib.util.spec_from_file_location(f"vidgen_peer_official_latte_{abs(hash(str(file)))}", file)
    if spec is None or spec.loader is None:
        raise ConfigError("bench.official_latte", f"{file} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as error:
        raise ConfigError(
            "bench.official_latte", f"{file} does not import ({error}); it needs torch, timm, einops, numpy"
        ) from error
    if not isinstance(getattr(module, "Latte", None), type):
        raise ConfigError(
            "bench.official_latte", f"{file} has no class Latte: is it the official models/latte.py?"
        )
    return module


def build_official(arch: LatteArch, module: ModuleType, attention_mode: str = "math") -> Contender:
    """The official ``Latte`` of ``module`` (:func:`load_official_module`) at ``arch``'s sizes, adapted."""
    if attention_mode == "xformers" and not hasattr(module, "xformers"):
        raise ConfigError("bench.official_attention", "xformers is not installed (attention_mode=xformers)")
    class_conditional = arch.num_classes > 0
    drop = arch.label_drop_prob if class_conditional else 0.0
    model = module.Latte(
        input_size=arch.input_size,
        patch_size=arch.patch_size,
        in_channels=arch.in_channels,
        hidden_size=arch.hidden_size,
        depth=arch.depth,
        num_heads=arch.num_heads,
        mlp_ratio=arch.mlp_ratio,
        num_frames=arch.num_frames,
        class_dropout_prob=drop,
        num_classes=arch.num_classes,
        learn_sigma=arch.learn_sigma,
        extras=2 if class_conditional else 1,
        attention_mode=attention_mode,
    )
    name = f"Latte-{arch.size}/{arch.patch_size}"
    table = getattr(module, "Latte_models", {})
    size = LATTE_SIZES.get(arch.size)
    same_size = size is not None and tuple(size) == (arch.depth, arch.hidden_size, arch.num_heads)
    notes = [
        f"loaded from {module.__file__}; Latte(depth={arch.depth}, hidden_size={arch.hidden_size}, "
        f"num_heads={arch.num_heads}, patch_size={arch.patch_size}"
        + (f", = Latte_models['{name}']" if same_size and name in table else "")
        + f"), extras={2 if class_conditional else 1} "
        + ("(class labels)" if class_conditional else "(unconditional)")
        + f", attention_mode={attention_mode}",
        "layout (B, F, C, H, W): the adapter transposes input and output",
        "adaLN linears run on the condition repeated per frame (spatial blocks) and per position (temporal "
        "blocks) rather than once per clip: more FLOPs for the same weights",
        "pos_embed / temp_embed are frozen nn.Parameters (requires_grad=False): not counted as trainable",
    ]
    if attention_mode == "math":
        notes.append(
            "attention_mode=math (its default and training setting) materialises softmax(QK^T); "
            "bench.official_attention=flash uses SDPA"
        )
    if class_conditional:
        notes.append(
            f"labels dropped inside the model with p={drop:g} (class_dropout_prob; vidgen drops them in its "
            "conditioner, outside the step)"
            + ("; without dropout its label table has no null row (vidgen's has)" if drop == 0 else "")
        )
    return Contender("official", OfficialLatteAdapter(model, class_conditional), "Vchitect/Latte", notes)


def build_diffusers(arch: LatteArch) -> Contender:
    """``LatteTransformer3DModel`` at ``arch``'s sizes, set up like the released Latte-1 transformer but with
    no cross-attention, adapted."""
    from diffusers import LatteTransformer3DModel

    caption_channels = 1
    model = LatteTransformer3DModel(
        num_attention_heads=arch.num_heads,
        attention_head_dim=arch.hidden_size // arch.num_heads,
        in_channels=arch.in_channels,
        out_channels=arch.out_channels,
        num_layers=arch.depth // 2,
        cross_attention_dim=None,
        attention_bias=True,
        sample_size=arch.input_size,
        patch_size=arch.patch_size,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        caption_channels=caption_channels,
        video_length=arch.num_frames,
    )
    unused = sum(p.numel() for p in model.caption_projection.parameters())
    notes = [
        f"LatteTransformer3DModel(num_layers={arch.depth // 2} spatial + temporal pairs, "
        f"{arch.num_heads} heads x {arch.hidden_size // arch.num_heads}, norm_type=ada_norm_single, "
        "activation_fn=gelu-approximate, cross_attention_dim=None): the released Latte-1 transformer's "
        "settings at vidgen's sizes, without text; attention via SDPA (AttnProcessor2_0)",
        "adaLN-single (PixArt): one shared Linear(h, 6h) on the timestep embedding plus a learned (6, h) table "
        "per block, and a (2, h) table in the final layer, instead of a Linear(h, 6h) per block and a "
        "Linear(h, 2h) in the final layer: fewer parameters and slightly fewer FLOPs",
        f"its forward always runs the caption projection: a dummy zero text state (B, 1, {caption_channels}) "
        f"that no block reads (no cross-attention); those {unused:,} parameters are counted but get no gradient",
        "initialised by diffusers' defaults, not adaLN-Zero (the same compute)",
    ]
    if arch.num_classes:
        notes.append("no class-label input: the labels are not used (timestep conditioning only)")
    return Contender(
        "diffusers",
        DiffusersLatteAdapter(model, caption_channels),
        "diffusers.LatteTransformer3DModel",
        notes,
    )


# ------------------------------------------------------------------------------------------------ measuring
def count_step_flops(module: nn.Module, inputs: StepInputs) -> tuple[int, int]:
    """``(forward, forward + backward)`` FLOPs of one training step of ``module`` on ``inputs``, counted on a
    meta-device copy (nothing computed): SDPA through its math path, the official attention as ``math``."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counting = copy.deepcopy(module).to("meta")
    for sub in counting.modules():
        if getattr(sub, "attention_mode", None) in ("flash", "xformers"):
            sub.attention_mode = "math"  # the official Attention: the same FLOPs, countable on any device
    counting.train()
    meta = inputs.to("meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        out = counting(meta.x, meta.t, meta.labels)
        forward = counter.get_total_flops()
        F.mse_loss(out.float(), meta.target).backward()
        total = counter.get_total_flops()
    return int(forward), int(total)


def training_step(
    module: nn.Module, inputs: StepInputs, optim: dict[str, Any], device: torch.device, precision: str
) -> Callable[[], None]:
    """A closure running one training step of ``module`` (already on ``device``) with its own AdamW."""
    optimizer = adamw(module, optim)

    def step() -> None:
        with _autocast(device, precision):
            out = module(inputs.x, inputs.t, inputs.labels)
        F.mse_loss(out.float(), inputs.target).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_round_robin(
    steps: dict[str, Callable[[], None]], rounds: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each timed step per model: ``warmup`` untimed steps of each model in turn, then ``rounds``
    rounds calling every model once in ``steps`` order (``time.perf_counter``, the device synchronised
    around each step)."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    _synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            _synchronize(device)
            start = time.perf_counter()
            step()
            _synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def summarise_times(times: dict[str, list[float]], reference: str = VIDGEN) -> dict[str, dict[str, float]]:
    """``{name: {"median_step_ms", "ratio_vs_vidgen"}}``: the median step time and its ratio ``name /
    reference`` (above 1: the reference is faster)."""
    medians = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    return {
        name: {"median_step_ms": median, "ratio_vs_vidgen": median / medians[reference]}
        for name, median in medians.items()
    }


def compiled_names(cfg: DictConfig, names: list[str]) -> set[str]:
    """The models of ``names`` to time compiled: vidgen's with ``compile.enabled`` (as training compiles its
    denoiser), and every peer too with ``bench.compile_peers`` (the equal-treatment comparison).

    Raises:
        ConfigError: ``bench.compile_peers`` without ``compile.enabled``; ``bench.warmup_steps`` below 1 with
            a compiled model (its first step compiles: it must not be a timed round).
    """
    enabled = bool(cfg.get("compile", {}).get("enabled", False))
    peers_too = bool(cfg.bench.get("compile_peers", False))
    if peers_too and not enabled:
        raise ConfigError(
            "bench.compile_peers", "compiles the peers like vidgen's denoiser: it needs compile.enabled=true"
        )
    if enabled and int(cfg.bench.warmup_steps) < 1:
        raise ConfigError(
            "bench.warmup_steps",
            f"a compiled model compiles in its first step: give at least 1 warm-up step, got "
            f"{cfg.bench.warmup_steps}",
        )
    if not enabled:
        return set()
    return {name for name in names if name == VIDGEN or peers_too}


def run_peers(cfg: DictConfig) -> dict[str, Any]:
    """Build the composed vidgen Latte and the ``bench.peers`` at its sizes in this process, count their
    parameters and step FLOPs, and (``bench.time``) time their training steps round-robin on
    ``bench.device``. Returns the rows and the settings they were taken with.

    Raises:
        ConfigError: ``bench.peers`` (unknown peer, not a vidgen Latte, a design the peers lack, beside
            ``bench.compare``), ``bench.official_latte`` (missing or unimportable file),
            ``bench.official_attention``, ``bench.train_steps`` (below 1 when timing), ``bench.compile_peers``
            and ``bench.warmup_steps`` (:func:`compiled_names`).
    """
    names = checked_peers(cfg)
    _check_latte_target(cfg)
    validate_config(cfg)
    settings = cfg.bench
    timed = bool(settings.get("time", True))
    rounds, warmup = int(settings.train_steps), int(settings.warmup_steps)
    if timed and rounds < 1:
        raise ConfigError("bench.train_steps", f"time at least one round of steps, got {rounds}")
    compiled = compiled_names(cfg, [VIDGEN, *names]) if timed else set()
    mode = cfg.compile.get("mode") if "compile" in cfg else None
    official_path = settings.get("official_latte")
    official_module = None
    if "official" in names and official_path is not None:
        official_module = load_official_module(official_path)

    seed = int(cfg.seed)
    torch.manual_seed(seed)
    vidgen, arch = build_vidgen(cfg, names)
    contenders = [vidgen]
    skipped: dict[str, str] = {}
    for name in names:
        torch.manual_seed(seed)
        if name == "official":
            if official_module is None:
                skipped[name] = (
                    "skipped: bench.official_latte is null (give the path of a local copy of the official "
                    "models/latte.py, e.g. bench.official_latte=/path/to/Latte/models/latte.py)"
                )
                continue
            attention = str(settings.get("official_attention") or "math")
            contenders.append(build_official(arch, official_module, attention))
        else:
            contenders.append(build_diffusers(arch))

    batch_size = int(settings.batch_size or cfg.data.batch_size)
    inputs = StepInputs.random(arch, batch_size, int(cfg.diffusion.num_timesteps), seed)
    rows = []
    for contender in contenders:
        forward, total = count_step_flops(contender.module, inputs)
        rows.append(
            {
                "name": contender.name,
                "implementation": contender.implementation,
                "params_trainable": sum(p.numel() for p in contender.module.parameters() if p.requires_grad),
                "forward_flops": forward,
                "step_flops": total,
                "median_step_ms": None,
                "ratio_vs_vidgen": None,
                "compiled": contender.name in compiled,
                "step_ms": [],
                "notes": contender.notes,
            }
        )

    device = pick_device(str(settings.device))
    precision = str(settings.precision or cfg.trainer.precision)
    warn_if_slow_bf16(
        device.type, precision, "bench.precision" if settings.precision else "trainer.precision"
    )
    if timed:
        on_device = inputs.to(device)
        optim = dict(cfg.optim)
        steps = {}
        for contender in contenders:
            contender.module.to(device).train()
            if contender.name in compiled:
                contender.module.compile(mode=mode)  # in place; its first (warm-up) step compiles
            steps[contender.name] = training_step(contender.module, on_device, optim, device, precision)
        times = time_round_robin(steps, rounds, warmup, device)
        summary = summarise_times(times)
        for row in rows:
            row.update(summary[row["name"]], step_ms=[s * 1e3 for s in times[row["name"]]])

    return {
        "peers": names,
        "model": f"Latte {arch.size}",
        "arch": asdict(arch),
        "latent_shape": list(arch.latent_shape),
        "batch_size": batch_size,
        "device": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
        )
        if timed
        else "none (bench.time=false)",
        "threads": torch.get_num_threads(),
        "precision": precision if timed else "n/a",
        "warmup_steps": warmup,
        "compile_mode": mode if compiled else None,
        "train_steps": rounds,
        "step": STEP,
        "flops_convention": FLOPS,
        "rows": rows,
        "skipped": skipped,
    }


# ------------------------------------------------------------------------------------------------ report
def format_peers(result: dict[str, Any]) -> str:
    """A Markdown table (model, parameters, GFLOPs / step, median step ms, ratio vs vidgen) and the settings
    and notes below it."""
    header = ["model", "parameters", "GFLOPs / step (fwd + bwd)", "median step (ms)", "ratio vs vidgen"]
    rows = []
    for row in result["rows"]:
        params = row["params_trainable"]
        timed = row["median_step_ms"] is not None
        rows.append(
            [
                f"{row['name']} ({row['implementation']})" + (", compiled" if row.get("compiled") else ""),
                f"{params:,} ({params / 1e6:.2f}M)",
                f"{row['step_flops'] / 1e9:.2f} (fwd {row['forward_flops'] / 1e9:.2f})",
                f"{row['median_step_ms']:.1f}" if timed else "not measured",
                f"{row['ratio_vs_vidgen']:.3f}" if timed else "not measured",
            ]
        )
    for name, reason in result["skipped"].items():
        rows.append([name, reason, "", "", ""])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"

    c, f, h, w = result["latent_shape"]
    timed = any(row["median_step_ms"] is not None for row in result["rows"])
    where = f"; {result['device']} ({result['threads']} threads), {result['precision']}" if timed else ""
    timing = "timing: not measured (bench.time=false)"
    if timed:
        timing = (
            f"timing: {result['warmup_steps']} warm-up steps per model, then {result['train_steps']} rounds "
            "round-robin in the table's order, all models in one process; ratio = peer / vidgen median step "
            "time: above 1 means vidgen is faster"
        )
        compiled = [row["name"] for row in result["rows"] if row.get("compiled")]
        if compiled:
            timing += (
                f"; compiled: torch.compile (compile.mode={result.get('compile_mode')}) of "
                f"{', '.join(compiled)}, whose first warm-up step compiles"
            )
    notes = [
        f"{result['model']}: latents {c} x {f} frames x {h} x {w}, batch {result['batch_size']}{where}",
        f"step: {result['step']}",
        timing,
        f"FLOPs: {result['flops_convention']}",
        *(f"{row['name']}: {note}" for row in result["rows"] for note in row["notes"]),
    ]
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows), *notes])
