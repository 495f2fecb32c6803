"""The VDM experiments (conf/experiment/vdm/*.yaml) at both scales (conf/scale/vdm/*.yaml).

Checked: the joint-training ablation sweeps exactly ``data.joint_image_frames`` over 0, 4, 8 at both scales;
every tiny arm validates, builds the tiny VDM 3D U-Net under VDM's continuous diffusion and runs one forward on
its own batch layout; every paper arm builds on the meta device (the T2V-small U-Net in pixel space, not the
WebVid recipe's latents); scales and experiments of other families are refused; (slow) the tiny sweep runs end
to end for a couple of steps and reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import CONFIG_DIR, compose_config
from tests.experiment_scripts import QUICK_SWEEP, load_script, run_sweep, sweep_values
from vidgen.conditioning import Cond
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config

_PATHS = ["paths.output_root=outputs", "paths.weights_dir=weights", "paths.cache_dir=outputs/cache"]
_TEXT = ["conditioner.path=clip.bin", "conditioner.model_name=ViT-B-32", "conditioner.text_dim=512"]


def _sweep(scale: str) -> dict[str, list[str]]:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["experiment=vdm/joint_training", f"scale=vdm/{scale}", *_PATHS],
            return_hydra_config=True,
        )
    assert cfg.task_name == "vdm_joint_training" and cfg.scale.family == "vdm"
    return sweep_values(cfg)


@pytest.mark.parametrize("scale", ["tiny", "paper"])
def test_joint_training_sweeps_the_number_of_images(scale: str) -> None:
    assert _sweep(scale) == {"data.joint_image_frames": ["0", "4", "8"]}


def test_every_tiny_arm_builds_under_vdm_diffusion(tmp_path: Path) -> None:
    budgets = []
    for k in (0, 4, 8):
        cfg = compose_config(
            ["experiment=vdm/joint_training", "scale=vdm/tiny", *_PATHS, f"data.joint_image_frames={k}"],
            run_dir=tmp_path,
        )
        validate_config(cfg)
        assert cfg.diffusion.schedule == "cosine_logsnr" and cfg.sampler.name == "vdm_ancestral"
        assert (cfg.autoencoder.kind, cfg.conditioner.kind, cfg.model.size) == ("identity", "none", "tiny")
        budgets.append(
            (cfg.trainer.max_steps, cfg.data.batch_size, cfg.evaluation.num_fake, cfg.sampler.steps)
        )
        model = instantiate_node(cfg.model).eval()
        item = instantiate_node(cfg.data).training_dataset()[0]
        x = item["video"][None]
        assert x.shape == (1, 3, 8 + k, 16, 16)
        with torch.no_grad():
            out = model(x, torch.tensor([3.5]), Cond(num_video_frames=8 if k else None))  # t = a log-SNR
        assert out.shape == x.shape
    assert len(set(budgets)) == 1


def test_every_paper_arm_builds_on_the_meta_device(tmp_path: Path) -> None:
    for k in (0, 8):
        cfg = compose_config(
            [
                "experiment=vdm/joint_training",
                "scale=vdm/paper",
                *_PATHS,
                *_TEXT,
                f"data.joint_image_frames={k}",
            ],
            run_dir=tmp_path,
        )
        assert (cfg.data.num_frames, cfg.data.resolution, cfg.data.frame_stride) == (16, 64, 1)
        assert cfg.autoencoder.kind == "identity" and cfg.diffusion.schedule == "cosine_logsnr"
        assert (cfg.sampler.steps, cfg.sampler.gamma, cfg.optim.lr) == (256, 0.3, 3.0e-4)
        with torch.device("meta"):
            model = instantiate_node(cfg.model)
        # T2V small (294,589,699 in pixel space) + the attention pool of 512-d text states
        assert (
            sum(p.numel() for p in model.parameters())
            == 294_589_699 + 3 * 512**2 + 4 * 512 + 512 * 1024 + 1024
        )


def test_families_of_scales_and_experiments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scale=vdm/tiny or scale=vdm/paper"):
        validate_config(
            compose_config(["experiment=vdm/joint_training", "scale=tiny", *_PATHS], run_dir=tmp_path)
        )
    with pytest.raises(ConfigError, match="VDMUNet3D"):
        validate_config(compose_config(["scale=vdm/tiny", "model=latte_v1", *_PATHS], run_dir=tmp_path))
    with pytest.raises(ConfigError, match="is required by this experiment"):
        validate_config(compose_config(["experiment=vdm/joint_training", *_PATHS], run_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_tiny_joint_training_sweep_runs_and_reports(tmp_path: Path) -> None:
    overrides = [
        "experiment=vdm/joint_training",
        "scale=vdm/tiny",
        *QUICK_SWEEP,
        f"paths.output_root={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    jobs = run_sweep(overrides, tmp_path / "sweep", 3)
    written = load_script("latte", "report").write_report(tmp_path / "sweep")
    text = written["markdown"].read_text()
    assert all(f"data.joint_image_frames={k}" in text for k in (0, 4, 8)) and len(jobs) == 3


def test_extension_script_scores_every_arm(tmp_path: Path) -> None:
    """experiments/vdm/extension.py on a tiny VDM U-Net trained 2 steps: one row per arm with the long-clip and
    structure scores, the videos and the join strips written (that every method draws the same first block is
    tested in tests/test_conditional_sampling.py)."""
    from tests.conftest import TINY_DATA, TINY_RUN
    from vidgen.io.video import read_video
    from vidgen.lit.training import train

    quick = [
        *TINY_DATA,
        *TINY_RUN,
        "model=vdm_unet3d",
        "model.size=tiny",
        "diffusion=vdm",
        "sampler=vdm_ancestral",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "callbacks.model_checkpoint.every_n_train_steps=2",
        "samples.num_videos=0",
        "samples.final_num_videos=0",
        "logger=csv",
    ]
    run_dir = tmp_path / "run"
    train(compose_config(quick, run_dir=run_dir))
    script = load_script("vdm", "extension")
    out = tmp_path / "ext"
    args = ["--ckpt", str(run_dir / "checkpoints" / "last.ckpt"), "--num-videos", "2", "--num-frames", "10"]
    assert (
        script.main([*args, "--context", "2", "--steps", "2", "--weights", "2", "--output-dir", str(out)])
        == 0
    )
    report = json.loads((out / "extension.json").read_text())
    assert [r["arm"] for r in report["rows"]] == ["independent blocks", "replacement", "reconstruction w=2"]
    for row in report["rows"]:
        assert "synthetic_long/boundary_motion_consistency" in row and row["seconds_per_video"] > 0
    assert read_video(out / "replacement" / "sample_000.mp4").shape[0] == 10
    assert (out / "replacement_join.png").is_file() and "| replacement |" in (
        out / "extension.md"
    ).read_text()
