"""``python -m vidgen.sample ckpt_path=... num_videos=8 sampler=ddim sampler.steps=50 guidance_scale=...``

Writes one file per sample and a grid into the Hydra run directory (or ``out_dir``): ``sample_000.mp4``, ...,
``grid.mp4``, or ``sample_000.png``, ..., ``grid.png`` when the samples have one frame. The model,
autoencoder and conditioner are rebuilt from the checkpoint's stored config, with two kinds of changes:

- ``data.num_frames=N``: sample clips of ``N`` frames, another length than the model was trained on (the
  Latent-Shift family and Latte with per-frame patches take any; a model that cannot, e.g. Latte's tube
  embedding given a length that is not a multiple of its stride, stops with a ConfigError naming
  ``data.num_frames`` before sampling).
  ``data.num_frames=1`` makes images: Latent-Shift's text-to-image from the video model, with the shift in
  place: both shifted parts are zeros, the padding the model saw at the first and last frames of its
  training clips (the paper shows that this works, and that removing the shift does not).
- ``config_overrides``: any dotlist of the stored config, e.g. the "T2I without the shift" ablation on the
  same weights (Latent-Shift and the per-frame U-Net have identical state-dict keys)::

    python -m vidgen.sample ckpt_path=RUN/checkpoints/last.ckpt data.num_frames=1 'captions=["a red square"]'
    # the same images without the shift: add
    'config_overrides=["model.temporal=none"]'

  (the inner quotes are needed: Hydra reads ``=`` inside a list only in a quoted string).

Conditional generation from the same unconditional (or class / text) model, by reconstruction guidance or
replacement (VDM §3.1; :mod:`vidgen.lit.conditional_sampling`), with ``sampler=vdm_ancestral`` (or ``ddim``,
``ddpm``): one task at a time.

- ``extend.num_frames=64``: videos longer than the model's clip, block by block (``extend.method``,
  ``extend.weight``, ``extend.context_frames``).
- ``condition_video=in.mp4 condition.frames=[0,1]`` (prediction) or ``condition.stride=4`` (interpolation):
  the given clip positions are filled, in order, by the video's frames 0, 1, ...; the rest is generated.
- ``superres.video=small.mp4``: clips at the model's resolution whose downsampled version is the given one.

The work is :func:`vidgen.lit.checkpoint_sampling.sample`, imported once Hydra has a config (``--help`` does
not load torch).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import vidgen  # noqa: F401  (registers config resolvers)
from vidgen.config.errors import ConfigError
from vidgen.runtime import CONFIG_DIR


@hydra.main(config_path=CONFIG_DIR, config_name="sample", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """Hydra entry: sample (exit 2 on a config error)."""
    from vidgen.diffusion import GuidanceError  # torch loads here, not for --help
    from vidgen.lit.checkpoint_sampling import sample

    try:
        sample(cfg)
    except (ConfigError, ValueError, GuidanceError) as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
