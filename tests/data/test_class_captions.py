"""Captions from class names (data.class_captions): the prompt of each class, every clip's caption is its
label's class, sampling draws captions of the validation labels, and bad settings name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import compose_config
from tests.data.real_layouts import LAYOUTS, UCF_CLASSES
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.data.class_captions import checked_template, class_prompt


@pytest.mark.parametrize(
    ("name", "prompt"),
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("YoYo", "yo yo"),
        ("HandstandPushups", "handstand pushups"),
        ("PlayingDaf", "playing daf"),
        ("TaiChi", "tai chi"),
        ("Skijet", "skijet"),
        ("walk_the_dog", "walk the dog"),
        ("Shot2", "shot 2"),
    ],
)
def test_the_prompt_of_a_class_is_its_words_in_lower_case(name: str, prompt: str) -> None:
    assert class_prompt(name) == prompt
    assert class_prompt(name, "a video of {name}") == f"a video of {prompt}"


@pytest.mark.parametrize("template", ["a video", "{label}", "{name} {0}", None, 3])
def test_a_template_without_exactly_name_fails_naming_the_key(template: object) -> None:
    with pytest.raises(ConfigError) as error:
        checked_template(template)
    assert error.value.key == "data.class_captions"


def test_every_clip_is_captioned_with_its_class(tmp_path: Path) -> None:
    layout = LAYOUTS["ucf101"](tmp_path / "data")
    overrides = ["data=ucf101", f"data.root={layout.root}", "data.class_captions='a video of {name}'"]
    datamodule = instantiate_node(compose_config(overrides, run_dir=tmp_path / "r").data)
    assert datamodule.has_captions and datamodule.class_names == sorted(UCF_CLASSES)
    prompts = [class_prompt(name, "a video of {name}") for name in datamodule.class_names]
    for index in range(len(datamodule.train_set)):
        item = datamodule.train_set[index]
        assert item["caption"] == prompts[item["label"]] and item["video"].shape[0] == 3
    labels = datamodule.sample_labels(7).tolist()
    assert datamodule.sample_captions(7) == [prompts[label] for label in labels]
    assert datamodule.train_set.condition_of(0)["caption"] == prompts[datamodule.train_set.labels[0]]


def test_captions_need_class_labels(tmp_path: Path) -> None:
    layout = LAYOUTS["ucf101"](tmp_path / "data")
    overrides = ["data=ucf101", f"data.root={layout.root}", "data.class_captions='{name}'"]
    overrides.append("data.class_from_folder=false")
    with pytest.raises(ConfigError) as error:
        instantiate_node(compose_config(overrides, run_dir=tmp_path / "r").data)
    assert error.value.key == "data.class_captions"


def test_a_text_model_trains_on_ucf101_from_its_class_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison's paper-scale setting on a tiny UCF101 tree: the text conditioner reads each clip's
    class prompt (a tiny open_clip model in its real on-disk format) and a text Latte trains 2 steps."""
    import warnings

    from tests.data.test_real_layouts import CPU_RUN
    from tests.tiny_open_clip import NAME, TEXT_WIDTH, forbid_open_clip_downloads, save_tiny_open_clip
    from vidgen.lit.training import train

    forbid_open_clip_downloads(monkeypatch)
    (tmp_path / "clip").mkdir()
    checkpoint, config = save_tiny_open_clip(tmp_path / "clip")
    layout = LAYOUTS["ucf101"](tmp_path / "data")
    overrides = [
        "data=ucf101",
        f"data.root={layout.root}",
        "data.class_captions='a video of {name}'",
        *CPU_RUN,
        "conditioner=text",
        f"conditioner.path={checkpoint}",
        f"conditioner.model_name={config}",
        f"conditioner.text_dim={TEXT_WIDTH}",
        "model.size=tiny",
        "model.depth=2",
        "model.hidden_size=32",
        "model.num_heads=2",
    ]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = train(cfg)
    assert summary["global_step"] == 2 and NAME in str(config)
