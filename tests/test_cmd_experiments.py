"""The CMD experiments (conf/experiment/cmd/*.yaml) at their scale (conf/scale/cmd/tiny.yaml).

Checked: the autoencoder ablation sweeps exactly ``model.motion_dim`` over 2, 4, 8, 16; its arms validate
and builds the tiny CMD autoencoder with a motion latent of its width D on the synthetic clips (45,142
parameters at D = 8, pixel space), evaluated at the end with the in-domain metrics and sampled with DDIM 50;
the scale also serves a stage-2 or Latte run without the experiment; a scale of another family, and no scale,
are refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import CONFIG_DIR, compose_config
from tests.experiment_scripts import sweep_values
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import check_experiment_scale, validate_config

_PATHS = ["paths.output_root=outputs", "paths.weights_dir=weights", "paths.cache_dir=outputs/cache"]


def test_autoencoder_experiment_sweeps_the_motion_latent_width() -> None:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["experiment=cmd/autoencoder", "scale=cmd/tiny", *_PATHS],
            return_hydra_config=True,
        )
    assert cfg.task_name == "cmd_autoencoder" and cfg.scale.family == "cmd"
    assert sweep_values(cfg) == {"model.motion_dim": ["2", "4", "8", "16"]}


@pytest.mark.parametrize(("motion_dim", "params"), [(2, None), (8, 45_142)])
def test_arms_build_the_tiny_autoencoder(tmp_path: Path, motion_dim: int, params: int | None) -> None:
    overrides = ["experiment=cmd/autoencoder", "scale=cmd/tiny", *_PATHS, f"model.motion_dim={motion_dim}"]
    cfg = compose_config(overrides, run_dir=tmp_path)
    validate_config(cfg)
    assert (cfg.data.name, cfg.autoencoder.kind, cfg.conditioner.kind) == ("synthetic", "identity", "none")
    assert (cfg.sampler.name, cfg.sampler.steps, cfg.sampler.eta) == ("ddim", 50, 0.0)
    assert cfg.evaluation.at_end and (cfg.evaluation.num_real, cfg.evaluation.num_fake) == (512, 64)
    assert set(cfg.metrics) == {"synthetic_fvd", "synthetic_structure"}
    model = instantiate_node(cfg.model).eval()
    if params is not None:
        assert sum(p.numel() for p in model.parameters()) == params
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    with torch.no_grad():
        recon, content, motion = model(x)
    assert recon.shape == x.shape and content.shape == (1, 3, 16, 16)
    assert motion.shape == (1, motion_dim, 8, 8 + 8)  # (D, F, W' + H') at patch size 2


def test_scale_serves_stage2_and_latte_without_the_experiment(tmp_path: Path) -> None:
    """No experiment: any model may run at the CMD scale (the stage-2 models and the Latte baseline share its
    data, sampler and evaluation)."""
    for model in ("cmd", "latte_v1"):
        cfg = compose_config(["scale=cmd/tiny", f"model={model}", *_PATHS], run_dir=tmp_path)
        check_experiment_scale(cfg)
        assert cfg.sampler.name == "ddim" and cfg.evaluation.num_fake == 64


def test_families_of_scales_and_experiments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a cmd experiment needs a cmd scale"):
        validate_config(
            compose_config(["experiment=cmd/autoencoder", "scale=vdm/tiny", *_PATHS], run_dir=tmp_path)
        )
    with pytest.raises(ConfigError, match="is a cmd scale"):
        validate_config(
            compose_config(["experiment=vdm/joint_training", "scale=cmd/tiny", *_PATHS], run_dir=tmp_path)
        )
    with pytest.raises(ConfigError, match=r"is required by this experiment: scale=cmd/tiny"):
        validate_config(compose_config(["experiment=cmd/autoencoder", *_PATHS], run_dir=tmp_path))
