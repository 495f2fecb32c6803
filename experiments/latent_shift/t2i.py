"""Text-to-image generation from the trained video models, with and without their temporal parts.

``python experiments/latent_shift/t2i.py <multirun or run dirs ...> [--num 64] [--batch-size 64] [--seed 0]
[--video] [--initial] [--checkpoint last.ckpt] [--output-dir DIR] [--device auto]``

The T2I ablation of Latent-Shift (seed 001, Sec. 4.3, Table 5, Figs. 6-7): an image is a one-frame video, so
a model trained on videos can be sampled with ``F = 1``. For every trained arm (a job folder of
``experiment=latent_shift/t2i`` or ``latent_shift/temporal``, or any run directory holding
``checkpoints/last.ckpt``) this script loads the EMA weights and samples ``--num`` images (``F = 1``) in these
modes:

====================  ===========================================================================
arm                   modes
====================  ===========================================================================
latent_shift          ``kept``: the shift as trained; at ``F = 1`` both shifted channel groups are the
                      zero padding the model saw at the clip ends (the paper's T2I use) |
                      ``removed``: the same weights with ``model.temporal=none`` (no hooks: the shifted
                      channels keep the frame's own features), Fig. 6's "without the shift"
latent_vdm            ``kept``: temporal attention over a single frame | ``removed``: the temporal layers
                      dropped (the paper tried both; neither gives images)
latent_2d             ``image model``: the per-frame model, the reference
--initial             ``initial weights``: the first arm's U-Net before video training, shift removed
                      (tiny: random; paper: Stable Diffusion, Table 5's "LDM")
====================  ===========================================================================

Every mode of every arm uses the same captions (the data's evaluation captions) and the same noise
(``--seed``), the arm's sampler and guidance scale. Metrics of the images, per frame:

* synthetic data (tiny scale): ``synthetic_structure/object_presence`` (fraction of images with one plausible
  object) and ``synthetic_structure/colour_match`` (objects whose colour is a palette colour), the frame
  metrics of vidgen's in-domain set, plus ``caption_colour/match``: the fraction of images whose foreground
  has the caption's colour (majority of the foreground pixels' nearest palette colours) - the text-image
  agreement the synthetic world allows to check without a learned model;
* other data (paper scale): the run's ``clipsim`` metric when it has one (frames of the images vs captions).

``--video`` adds the same modes at the training clip length ``F`` (the paper's Fig. 7: videos without the
shift), scored with the run's own metrics (``synthetic_fvd`` etc., as the training evaluation) plus the
caption colour. Writes ``t2i.md`` (one row per arm and mode: metrics and seconds per sample), ``t2i.json``
and one PNG grid of the first 16 images per row (``t2i_<job>_<mode>.png``) into the multirun folder (or
``--output-dir``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

import vidgen  # noqa: E402, F401  (registers the config resolvers)
from experiments.latte.report import arm_labels, read_overrides, sweep_keys, table_lines  # noqa: E402
from vidgen.metrics.base import VideoMetric, check_uint8_videos  # noqa: E402

CHECKPOINT = "last.ckpt"
OUTPUT_STEM = "t2i"
#: images drawn into each PNG grid
GRID_IMAGES = 16


# ------------------------------------------------------------------------------------------------- metric
class CaptionColour(VideoMetric):
    """Fraction of frames that show a plausible object of the colour the caption names (synthetic data only).

    A frame counts when the structure analyser finds a plausible object in it (``object_presence``) and the
    majority colour of its foreground is the caption's. Foreground: pixels farther from the background than
    the analyser's threshold; a pixel's colour: the palette colour whose background-to-colour line is nearest
    (as the analyser assigns colours). The caption's colour: its first palette word (``"a red square moving
    left"`` -> red); a caption without one counts as a miss.
    """

    name = "caption_colour"
    needs_real = False

    def __init__(self, num_fake: int, analyzer: Any) -> None:
        self.num_fake = int(num_fake)
        self.analyzer = analyzer
        self.background = np.asarray(analyzer.background, dtype=np.float64)
        self.directions = np.asarray(analyzer.directions, dtype=np.float64)  # (K, 3) colour - background
        self.names = list(analyzer.colour_names)
        self.threshold = float(analyzer.threshold)
        self.frames = 0
        self.matched = 0

    def caption_colour(self, caption: str) -> str | None:
        for word in caption.lower().replace(",", " ").split():
            if word in self.names:
                return word
        return None

    def frame_colour(self, frame: np.ndarray) -> str | None:
        """The majority palette colour of the foreground of one ``(H, W, 3)`` frame (None: no foreground)."""
        pixels = frame.reshape(-1, 3).astype(np.float64) - self.background
        pixels = pixels[np.linalg.norm(pixels, axis=1) > self.threshold]
        if len(pixels) == 0:
            return None
        lengths = (self.directions**2).sum(axis=1)
        alpha = np.clip(pixels @ self.directions.T / lengths, 0.0, 1.0)  # (P, K)
        residual = np.linalg.norm(pixels[:, None, :] - alpha[..., None] * self.directions[None], axis=-1)
        votes = np.bincount(residual.argmin(axis=1), minlength=len(self.names))
        return self.names[int(votes.argmax())]

    def update_real(self, videos: torch.Tensor, labels: Any = None, captions: Any = None) -> None:
        """Real videos are not used."""

    def update_fake(
        self, videos: torch.Tensor, labels: Any = None, captions: Sequence[str] | None = None
    ) -> None:
        check_uint8_videos(videos, self.name)
        if captions is None or len(captions) != len(videos):
            raise ValueError(f"{self.name}: needs the caption of every clip")
        for clip, caption in zip(videos.cpu().numpy(), captions, strict=True):
            wanted = self.caption_colour(str(caption))
            present = self.analyzer.analyse_clip(clip).present
            for frame, shown in zip(clip, present, strict=True):
                self.frames += 1
                self.matched += int(bool(shown) and wanted is not None and self.frame_colour(frame) == wanted)

    def compute(self) -> dict[str, float]:
        if self.frames == 0:
            raise ValueError(f"{self.name}: no generated videos seen")
        return {f"{self.name}/match": self.matched / self.frames}


# -------------------------------------------------------------------------------------------- loading
def find_runs(paths: Sequence[Path]) -> list[tuple[Path, str]]:
    """``(run dir, label)`` of every run: the jobs of a multirun folder (labelled by their differing
    overrides, as the sweep report does), or run directories given directly (labelled by their name)."""
    runs: list[tuple[Path, str]] = []
    for path in paths:
        path = Path(path)
        if (path / "checkpoints").is_dir():
            runs.append((path, path.name))
            continue
        jobs = [p for p in path.iterdir() if p.is_dir() and (p / ".hydra" / "overrides.yaml").is_file()]
        jobs.sort(key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))
        if not jobs:
            raise SystemExit(f"{path} is neither a run directory (checkpoints/) nor a multirun folder")
        labels = arm_labels([read_overrides(job) for job in jobs], sweep_keys(path))
        runs.extend(zip(jobs, labels, strict=True))
    return runs


def load_module(checkpoint_path: Path, frames: int, temporal: str | None) -> tuple[Any, DictConfig]:
    """The trained module (EMA weights), rebuilt for ``frames``-frame samples, optionally with
    ``model.temporal`` replaced (``none``: no shift hooks, temporal attention layers dropped)."""
    from vidgen.lit.build import build_module, read_checkpoint
    from vidgen.lit.module import restore_frozen_weights

    checkpoint = read_checkpoint(checkpoint_path)
    cfg = _rebuilt_config(OmegaConf.create(checkpoint["vidgen_config"]), frames, temporal)
    module = build_module(cfg, config=OmegaConf.to_container(cfg, resolve=True))
    state = dict(checkpoint["state_dict"])
    restore_frozen_weights(module, state)
    if temporal == "none":  # Latent-VDM without its temporal layers
        state = {k: v for k, v in state.items() if ".temporal_layers." not in f".{k}"}
    module.load_state_dict(state, strict=True)
    return module.eval(), cfg


def initial_module(checkpoint_path: Path, frames: int) -> tuple[Any, DictConfig]:
    """The run's module as its config builds it, before training (pretrained U-Net or random), no shift."""
    from vidgen.lit.build import build_module, read_checkpoint

    checkpoint = read_checkpoint(checkpoint_path)
    cfg = _rebuilt_config(OmegaConf.create(checkpoint["vidgen_config"]), frames, "none")
    torch.manual_seed(int(cfg.seed))
    module = build_module(cfg, config=OmegaConf.to_container(cfg, resolve=True))
    return module.eval(), cfg


def _rebuilt_config(cfg: DictConfig, frames: int, temporal: str | None) -> DictConfig:
    overrides = {"data": {"num_frames": frames}, "model": {"num_frames": frames}}
    if temporal is not None:
        overrides["model"]["temporal"] = temporal
    return OmegaConf.merge(cfg, overrides)


def modes_of(temporal: str) -> list[tuple[str, str | None]]:
    """``(mode name, model.temporal override)`` for an arm trained with ``temporal``."""
    if temporal == "none":
        return [("image model", None)]
    return [("kept", None), ("removed", "none")]


# -------------------------------------------------------------------------------------------- scoring
def build_image_metrics(
    cfg: DictConfig, num: int, video: bool, device: torch.device | None = None
) -> dict[str, VideoMetric]:
    """The metrics of one mode: see the module docstring."""
    from vidgen.metrics.evaluation import build_metrics
    from vidgen.metrics.synthetic import SyntheticStructure

    metrics: dict[str, VideoMetric] = {}
    synthetic = str(cfg.data.get("name", "")) == "synthetic"
    if video:
        node = OmegaConf.create(OmegaConf.to_container(cfg.metrics, resolve=True))
        metrics.update(build_metrics(node, device or torch.device("cpu"), None, num))
    elif synthetic:
        metrics["synthetic_structure"] = SyntheticStructure(num_fake=num)
    elif "clipsim" in (cfg.get("metrics") or {}):
        node = OmegaConf.create({"clipsim": OmegaConf.to_container(cfg.metrics.clipsim, resolve=True)})
        metrics.update(build_metrics(node, device or torch.device("cpu"), None, num))
    if synthetic:
        structure = metrics.get("synthetic_structure") or SyntheticStructure(num_fake=num)
        metrics["caption_colour"] = CaptionColour(num, structure.analyzer)
    if not metrics:
        raise SystemExit(f"no image metric for data '{cfg.data.get('name')}' (synthetic data, or clipsim)")
    return metrics


def score(
    module: Any, cfg: DictConfig, captions: list[str], num: int, batch_size: int, seed: int, video: bool
) -> tuple[dict[str, float], float, torch.Tensor]:
    """Sample ``num`` clips (the given captions, noise from ``seed``) and score them; returns the metrics,
    the seconds per sample (sampling only) and the first :data:`GRID_IMAGES` samples."""
    from vidgen.metrics.evaluator import evaluate, frames_to_uint8_batch
    from vidgen.metrics.stats_cache import StatsCache

    metrics = build_image_metrics(cfg, num, video, module.device)
    generator = torch.Generator().manual_seed(seed)
    batches, kept, seconds = [], [], 0.0
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        chunk = captions[start : start + n]
        begin = time.perf_counter()
        samples = module.generate(n, generator=generator, captions=chunk)
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        seconds += time.perf_counter() - begin
        kept.append(samples[: max(0, GRID_IMAGES - sum(len(k) for k in kept))])
        batches.append({"video": frames_to_uint8_batch(samples), "label": None, "caption": chunk})
    real = None
    dataset_key = None
    if any(m.needs_real for m in metrics.values()):
        from vidgen.metrics.clip_sources import real_from_dataset
        from vidgen.metrics.evaluation import dataset_key as real_data_key

        datamodule = _datamodule(cfg)
        need = max(m.num_real_wanted for m in metrics.values() if m.needs_real)
        real = real_from_dataset(datamodule.evaluation_dataset(need), batch_size)
        dataset_key = real_data_key(OmegaConf.to_container(cfg.data, resolve=True), None)
    result = evaluate(
        metrics,
        batches,
        real,
        cache=StatsCache(Path(str(cfg.paths.cache_dir)) / "real_stats") if dataset_key else None,
        dataset_key=dataset_key,
    )
    return result["metrics"], seconds / num, torch.cat(kept)


def _datamodule(cfg: DictConfig) -> Any:
    from vidgen.config.instantiate import instantiate_node

    return instantiate_node(cfg.data)


def evaluation_captions(cfg: DictConfig, num: int) -> list[str]:
    """The data's evaluation captions (deterministic; those the training evaluations use)."""
    return list(_datamodule(cfg).sample_captions(num))


# --------------------------------------------------------------------------------------------- report
def _cell(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.4g}"


def markdown(rows: list[dict[str, Any]], title: str) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r["metrics"]))
    header = ["arm", "mode", "frames", "s / sample", *names]
    lines = [
        f"# Text-to-image from the video models: {title}",
        "",
        "Samples of every arm and mode from the same captions and noise (EMA weights, the arm's sampler and "
        "guidance). kept: the temporal part as trained; removed: `model.temporal=none` on the same weights; "
        "s / sample: sampling time per sample (no metrics).",
        "",
        *table_lines(
            header,
            (
                [r["arm"], r["mode"], str(r["frames"]), f"{r['seconds_per_sample']:.3g}"]
                + [_cell(r["metrics"].get(n)) for n in names]
                for r in rows
            ),
        ),
    ]
    return "\n".join(lines) + "\n"


def run(
    paths: Sequence[Path],
    num: int = 64,
    batch_size: int = 64,
    seed: int = 0,
    video: bool = False,
    initial: bool = False,
    checkpoint_name: str = CHECKPOINT,
    output_dir: Path | None = None,
    device: str = "auto",
) -> dict[str, Path]:
    """Evaluate every run in ``paths``; write the report files and return their paths."""
    from vidgen.io.video import make_grid_video, write_png
    from vidgen.runtime import pick_device

    where = pick_device(device)

    runs = find_runs(paths)
    out = Path(output_dir) if output_dir is not None else Path(paths[0])
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    captions: list[str] | None = None
    plans: list[
        tuple[Path, str, str, str | None, int, bool]
    ] = []  # run, arm, mode, temporal, frames, initial
    for run_dir, label in runs:
        checkpoint = run_dir / "checkpoints" / checkpoint_name
        if not checkpoint.is_file():
            raise SystemExit(f"{checkpoint} does not exist (train the arm first)")
        stored = OmegaConf.create(
            torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)["vidgen_config"]
        )
        trained = str(stored.model.get("temporal", "none"))
        lengths = [1, int(stored.data.num_frames)] if video else [1]
        for frames in lengths:
            plans.extend(
                (run_dir, label, mode, temporal, frames, False) for mode, temporal in modes_of(trained)
            )
    if initial and runs:
        plans.insert(0, (runs[0][0], "initial weights", "image model", "none", 1, True))
    for run_dir, arm, mode, temporal, frames, is_initial in plans:
        checkpoint = run_dir / "checkpoints" / checkpoint_name
        if is_initial:
            module, cfg = initial_module(checkpoint, frames)
        else:
            module, cfg = load_module(checkpoint, frames, temporal)
        module.to(where)
        if captions is None or len(captions) < num:
            captions = evaluation_captions(cfg, num)
        print(f"{arm} / {mode} / F={frames}: sampling {num} ...", flush=True)
        values, seconds, grid = score(module, cfg, captions, num, batch_size, seed, video=frames > 1)
        tag = "initial" if is_initial else f"{run_dir.name}_{mode.replace(' ', '_')}"
        tag += f"_f{frames}" if frames > 1 else ""
        image = make_grid_video(grid)[:, 0]  # the first frame of every sample, tiled: (C, H, W)
        write_png(out / f"{OUTPUT_STEM}_{tag}.png", image, scale=max(1, 128 // max(1, grid.shape[-1])))
        rows.append(
            {
                "run": str(run_dir),
                "arm": arm,
                "mode": mode,
                "temporal": "none" if is_initial else (temporal or str(cfg.model.temporal)),
                "frames": frames,
                "seconds_per_sample": seconds,
                "metrics": values,
                "grid": f"{OUTPUT_STEM}_{tag}.png",
            }
        )
        print("  " + ", ".join(f"{k} {_cell(v)}" for k, v in values.items()) + f"; {seconds:.3g} s/sample")
    written = {"markdown": out / f"{OUTPUT_STEM}.md", "json": out / f"{OUTPUT_STEM}.json"}
    written["markdown"].write_text(markdown(rows, ", ".join(str(p) for p in paths)))
    settings = {
        "num": num,
        "batch_size": batch_size,
        "seed": seed,
        "video": video,
        "checkpoint": checkpoint_name,
    }
    written["json"].write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", help="multirun folders or run directories")
    parser.add_argument("--num", type=int, default=64, help="samples per arm and mode (default 64)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="noise seed, the same for every mode")
    parser.add_argument("--video", action="store_true", help="also sample F-frame videos (Fig. 7)")
    parser.add_argument("--initial", action="store_true", help="also the U-Net before video training")
    parser.add_argument("--checkpoint", default=CHECKPOINT, help="file under checkpoints/ (last.ckpt)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: the first path")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    written = run(
        args.paths,
        args.num,
        args.batch_size,
        args.seed,
        args.video,
        args.initial,
        args.checkpoint,
        args.output_dir,
        args.device,
    )
    print(written["markdown"].read_text())
    print("Wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
