"""Initialise a Latte denoiser from an ImageNet DiT checkpoint (Latte's "learning strategy" (a)).

Mapping, by parameter name (Latte's parameter names follow DiT's):

* ``x_embedder``, ``t_embedder``, ``blocks.N.*``, ``final_layer.*``: copied where the name exists in the model
  with the same shape -> ``loaded``. Latte's block ``i`` takes DiT's block ``i`` whatever its role: spatial
  and temporal blocks alike start from DiT's (spatial) weights, as the Latte reference code does when it
  loads a DiT state dict into its interleaved blocks. DiT blocks beyond the model's depth are ``skipped``.
* A 2D kernel where the model has the same kernel with one more (temporal) axis, the compression-frame (tube)
  patch embedding ``(D, C, s, p, p)`` from DiT's ``(D, C, p, p)``: repeated over the ``s`` frames and divided by
  ``s`` (so a clip of ``s`` equal frames gets DiT's response) -> ``tiled``.
* The tube model's linear decoder ``final_layer.linear`` ``(p*p*s*C, D)`` (one block of ``C`` channels per
  frame of a tube, ordered ``(p1 p2 s c)``) from DiT's ``(p*p*C, D)``: DiT's decoder copied into every block,
  so that, with the temporal upsampler's channel-block-selection start, each frame of a tube gets DiT's
  output for the token -> ``tiled``.
* ``pos_embed`` ``(1, h*w, D)``: DiT's frozen 2D sin-cos table. Latte's spatial table is the same formula,
  a frozen buffer recomputed from the config (not a parameter, not saved) and added to the tokens of every
  frame, i.e. DiT's table tiled across the frames. Nothing needs copying: the table is compared with the
  model's and reported as ``tiled`` when equal, ``mismatched`` when its shape or values differ (the model
  keeps its own table).
* ``y_embedder.embedding_table.weight`` ``(1001, D)``: ImageNet's 1000 classes + null class, never used for a
  video dataset's classes -> ``skipped``; the model's own label table (if it has one) is zero-initialised
  (the Latte paper) and listed under ``new``.
* Same name, other shape -> ``mismatched``: reported, the model keeps its initialisation.
* Names only in the checkpoint -> ``skipped``; names only in the model (temporal tables, text
  cross-attention, extra blocks, ...) -> ``new``: they keep the model's own initialisation.

A checkpoint is a raw state dict (the released ``DiT-XL-2-256x256.pt``) or a training checkpoint of DiT's
``train.py`` ``{"model": ..., "ema": ..., "opt": ..., "args": ...}``; from the latter the ``"ema"`` weights
are used (what DiT's own ``find_model`` and Latte's loader use), else ``"model"``. Files are read with
``torch.load(weights_only=True)`` (allowing only DiT's stored ``argparse.Namespace`` besides tensors), or
as safetensors.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidgen.config.errors import ConfigError

__all__ = [
    "PretrainedReport",
    "apply_pretrained",
    "copy_denoiser_to_ema",
    "init_from_dit",
    "init_module_from_pretrained",
]

#: keys of DiT's state dict handled specially
DIT_POS_EMBED = "pos_embed"
DIT_LABEL_TABLE = "y_embedder.embedding_table.weight"
#: largest |difference| at which DiT's position table counts as equal to the model's (float32 round-off)
POS_EMBED_ATOL = 1e-5


@dataclass
class PretrainedReport:
    """What :func:`init_from_dit` did, one list per outcome (checkpoint order, then model order for ``new``).

    Attributes:
        path: the checkpoint file.
        source: which weights of the file were used: ``ema``, ``model`` or ``state_dict`` (a raw one).
        loaded: copied as they are.
        tiled: used across frames (``pos_embed``; a 2D kernel inflated to a tube kernel).
        skipped: in the checkpoint, not used (e.g. the ImageNet label table).
        new: in the model, not taken from the checkpoint (kept or zero-initialised).
        mismatched: in both, other shape (or, for ``pos_embed``, other values): not copied.
        notes: one line per special case (shapes, the label table, the position table).
    """

    path: str
    source: str
    loaded: list[str] = field(default_factory=list)
    tiled: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON to ``path``."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def summary(self) -> str:
        """A few lines for the log: the counts, and every mismatched key with its reason."""
        lines = [
            f"Initialised from DiT checkpoint {self.path} ({self.source} weights): {len(self.loaded)} loaded, "
            f"{len(self.tiled)} tiled, {len(self.skipped)} skipped, {len(self.new)} new, "
            f"{len(self.mismatched)} mismatched"
        ]
        lines += [f"  mismatched {key}: {self.notes.get(key, '')}" for key in self.mismatched]
        return "\n".join(lines)


def _missing_file(path: Path) -> ConfigError:
    return ConfigError(
        "pretrained.path",
        f"DiT checkpoint '{path}' does not exist. pretrained.path must name a local ImageNet DiT checkpoint in "
        "DiT's key layout (e.g. DiT-XL-2-256x256.pt of facebookresearch/DiT); nothing is downloaded",
    )


def read_dit_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The DiT weights of a checkpoint file and where they came from (``ema`` / ``model`` / ``state_dict``)."""
    if path is None or str(path) == "":
        raise ConfigError("pretrained.path", "no DiT checkpoint given")
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise _missing_file(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        content: Any = load_file(str(path))
    else:
        try:
            # DiT's train.py stores its argparse.Namespace next to the weights: a plain attribute bag
            with torch.serialization.safe_globals([argparse.Namespace]):
                content = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickles with code, truncated files, other formats
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(
                "pretrained.path", f"cannot read '{path}' as a DiT checkpoint: {first}"
            ) from None
    if not isinstance(content, dict):
        raise ConfigError(
            "pretrained.path", f"'{path}' holds a {type(content).__name__}, not a DiT state dict"
        )
    source = "state_dict"
    for name in ("ema", "model"):
        if isinstance(content.get(name), dict):
            content, source = content[name], name
            break
    state = {k: v for k, v in content.items() if isinstance(v, torch.Tensor)}
    if "x_embedder.proj.weight" not in state or not any(k.startswith("blocks.") for k in state):
        example = ", ".join(list(content)[:5])
        raise ConfigError(
            "pretrained.path",
            f"'{path}' is not in DiT's key layout (no x_embedder.proj.weight / blocks.*); its keys start {example}",
        )
    return state, source


def _is_inflatable(model_shape: torch.Size, dit_shape: torch.Size) -> bool:
    """A conv kernel ``(O, I, k, k)`` whose model twin has one more axis after ``I``: ``(O, I, s, k, k)``."""
    return (
        len(dit_shape) == 4
        and len(model_shape) == 5
        and model_shape[:2] == dit_shape[:2]
        and model_shape[3:] == dit_shape[2:]
    )


def _is_tube_decoder(model: nn.Module, key: str, model_shape: torch.Size, dit_shape: torch.Size) -> bool:
    """The tube model's widened linear decoder (``s`` times DiT's outputs) for DiT's ``final_layer.linear``."""
    if key not in ("final_layer.linear.weight", "final_layer.linear.bias"):
        return False
    if getattr(model, "temporal_upsample", None) is None:
        return False
    frames = int(getattr(model, "tube_stride", 1))
    p = int(getattr(model, "patch_size", 0))
    return (
        frames > 1
        and p > 0
        and model_shape[1:] == dit_shape[1:]
        and model_shape[0] == frames * dit_shape[0]
        and dit_shape[0] % (p * p) == 0
    )


@torch.no_grad()
def init_from_dit(model: nn.Module, path: str | Path) -> PretrainedReport:
    """Copy an ImageNet DiT checkpoint's matching weights into ``model`` (a Latte), in place.

    See the module docstring for the mapping. Never fails on a shape mismatch: it is reported.

    Args:
        model: the denoiser (parameter names following DiT's).
        path: the DiT checkpoint file (config key ``pretrained.path``).

    Returns:
        The :class:`PretrainedReport`.
    """
    dit, source = read_dit_state_dict(path)
    report = PretrainedReport(path=str(path), source=source)
    target = model.state_dict()  # tensors share storage with the model's parameters / buffers
    used: set[str] = set()
    for key, value in dit.items():
        if key == DIT_POS_EMBED:
            _compare_position_table(model, value, report)
        elif key == DIT_LABEL_TABLE:
            report.skipped.append(key)
            report.notes[key] = (
                f"DiT's ImageNet label table {tuple(value.shape)} (1000 classes + null) is not used; the model's "
                "label table, if any, starts at zero"
            )
        elif key not in target:
            report.skipped.append(key)
        elif target[key].shape == value.shape:
            target[key].copy_(value.to(target[key].dtype))
            report.loaded.append(key)
            used.add(key)
        elif _is_tube_decoder(model, key, target[key].shape, value.shape):
            frames = target[key].shape[0] // value.shape[0]
            p, c = model.patch_size, value.shape[0] // model.patch_size**2
            blocks = target[key].view(p, p, frames, c, *value.shape[1:])
            blocks.copy_(value.view(p, p, 1, c, *value.shape[1:]).expand_as(blocks).to(blocks.dtype))
            report.tiled.append(key)
            report.notes[key] = (
                f"tube decoder: DiT's {tuple(value.shape)} copied into each of the {frames} frame blocks -> "
                f"{tuple(target[key].shape)}"
            )
            used.add(key)
        elif _is_inflatable(target[key].shape, value.shape):
            frames = target[key].shape[2]
            target[key].copy_((value.unsqueeze(2) / frames).expand_as(target[key]).to(target[key].dtype))
            report.tiled.append(key)
            report.notes[key] = (
                f"2D kernel {tuple(value.shape)} repeated over {frames} frames and divided by {frames} -> "
                f"{tuple(target[key].shape)}"
            )
            used.add(key)
        else:
            report.mismatched.append(key)
            report.notes[key] = (
                f"checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}: kept the model's"
            )
            used.add(key)
    for key, tensor in target.items():
        if key in used:
            continue
        if key == DIT_LABEL_TABLE:
            tensor.zero_()
            report.notes[key] = "zero-initialised (the Latte paper), not taken from the checkpoint"
        report.new.append(key)
    return report


def _compare_position_table(model: nn.Module, value: torch.Tensor, report: PretrainedReport) -> None:
    """DiT's ``pos_embed`` ``(1, h*w, D)`` against the model's frozen spatial table ``(h*w, D)``."""
    table = getattr(model, "pos_embed", None)
    if not isinstance(table, torch.Tensor) or table.numel() == 0:
        report.skipped.append(DIT_POS_EMBED)
        report.notes[DIT_POS_EMBED] = "the model has no spatial position table"
        return
    dit_table = value.reshape(-1, value.shape[-1]) if value.dim() == 3 and value.shape[0] == 1 else value
    if dit_table.shape != table.shape:
        report.mismatched.append(DIT_POS_EMBED)
        report.notes[DIT_POS_EMBED] = (
            f"checkpoint {tuple(value.shape)} vs the model's per-frame table {tuple(table.shape)} (another "
            "grid or width): kept the model's frozen sin-cos table"
        )
        return
    difference = float((dit_table.float().to(table.device) - table.float()).abs().max())
    if difference <= POS_EMBED_ATOL:
        report.tiled.append(DIT_POS_EMBED)
        report.notes[DIT_POS_EMBED] = (
            f"equal to the model's frozen 2D sin-cos table (max |diff| {difference:.1e}), which is added to the "
            "tokens of every frame (DiT's table tiled across frames); recomputed, not stored"
        )
    else:
        report.mismatched.append(DIT_POS_EMBED)
        report.notes[DIT_POS_EMBED] = (
            f"values differ from the model's frozen 2D sin-cos table (max |diff| {difference:.3g}): kept the "
            "model's table (it is recomputed from the config, not stored)"
        )


@torch.no_grad()
def copy_denoiser_to_ema(ema: nn.Module, denoiser: nn.Module) -> None:
    """Make the EMA twin equal to the denoiser (after an initialisation that came after the twin was made)."""
    ema.load_state_dict(denoiser.state_dict(), strict=True)
    for ema_buffer, buffer in zip(ema.buffers(), denoiser.buffers(), strict=True):
        ema_buffer.copy_(buffer)  # non-persistent buffers too


def init_module_from_pretrained(module: Any, path: str | Path, kind: str = "dit") -> PretrainedReport:
    """Initialise a :class:`~vidgen.lit.module.VideoDiffusionModule`'s denoiser from ``path`` and restart its
    EMA twin from the result (config node ``pretrained``)."""
    if kind != "dit":
        raise ConfigError("pretrained.kind", f"unknown kind '{kind}'; choose dit")
    report = init_from_dit(module.denoiser, path)
    if getattr(module, "ema_denoiser", None) is not None:
        copy_denoiser_to_ema(module.ema_denoiser, module.denoiser)
    return report


def apply_pretrained(module: Any, cfg: Any, ckpt_path: Path | None, run_dir: Path) -> PretrainedReport | None:
    """The ``pretrained`` config node of a training run: initialise the module's denoiser (and restart its
    EMA twin) with :func:`init_module_from_pretrained` on a fresh start only (``ckpt_path`` None; a resumed
    run keeps its checkpoint's weights). Rank 0 writes the report to ``<run_dir>/pretrained_report.json``.
    Returns the report, or None when nothing was applied."""
    node = cfg.get("pretrained")
    if not node or not node.get("path"):
        return None
    if ckpt_path is not None:
        print(f"pretrained.path is ignored: resuming from {ckpt_path}, which holds the initialised weights")
        return None
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    report = init_module_from_pretrained(module, node.path, str(node.get("kind", "dit")))
    if rank_zero_only.rank == 0:
        report.write(Path(run_dir) / "pretrained_report.json")
        print(f"{report.summary()}\nReport: {Path(run_dir) / 'pretrained_report.json'}")
    return report
