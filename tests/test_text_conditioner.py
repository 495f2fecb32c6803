"""Text conditioner: a tiny randomly initialised open_clip model saved to disk (state dict + model-config JSON)
and loaded back through ``conditioner.path`` / ``conditioner.model_name``; per-token states, mask, caption
dropout to the exact null condition, freezing, config errors, and a tiny end-to-end training run."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch

from tests.conftest import TINY, compose_config
from tests.tiny_open_clip import NAME, TEXT_WIDTH, forbid_open_clip_downloads, save_tiny_open_clip
from vidgen.conditioning import Cond, TextConditioner, build_conditioner
from vidgen.config.errors import ConfigError
from vidgen.config.instantiate import instantiate_node
from vidgen.config.schema import validate_config
from vidgen.lit.module import VideoDiffusionModule, restore_frozen_weights
from vidgen.models.latte import Latte

CAPTIONS = [
    "a red square moving left",
    "a blue circle moving up",
    "a green triangle",
    "a red square moving left",
]
MAX_LENGTH = 16


@pytest.fixture(autouse=True)
def forbid_downloads(monkeypatch):
    forbid_open_clip_downloads(monkeypatch)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


def make(tiny_clip, drop_prob: float = 0.5, max_length: int = MAX_LENGTH) -> TextConditioner:
    checkpoint, config = tiny_clip
    conditioner = build_conditioner(
        "text",
        drop_prob=drop_prob,
        text_dim=TEXT_WIDTH,
        path=str(checkpoint),
        model_name=str(config),  # a model-config JSON: registered under its stem
        max_length=max_length,
    )
    assert isinstance(conditioner, TextConditioner)
    return conditioner


@pytest.fixture(scope="module")
def conditioner(tiny_clip) -> TextConditioner:
    return make(tiny_clip)


def reference_clip(checkpoint: Path) -> torch.nn.Module:
    """The saved weights loaded by plain open_clip, independently of vidgen's loader."""
    model = open_clip.create_model(NAME, pretrained=None, pretrained_text=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model.eval()


def test_states_shape_mask_and_pooling_match_open_clip(conditioner, tiny_clip):
    cond = conditioner({"caption": CAPTIONS[:3]})
    assert cond.text.shape == (3, MAX_LENGTH, TEXT_WIDTH) and cond.text.dtype == torch.float32
    assert cond.text_mask.shape == (3, MAX_LENGTH) and cond.text_mask.dtype == torch.bool
    assert cond.pooled_text.shape == (3, TEXT_WIDTH) and cond.labels is None

    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    tokens = tokenizer(CAPTIONS[:3])  # full 77-token context, as CLIP was trained
    for i, row in enumerate(tokens):
        eot = int((row == tokenizer.eot_token_id).nonzero()[0])
        expected = torch.arange(MAX_LENGTH) <= eot  # True up to and including the end-of-text token
        assert torch.equal(cond.text_mask[i], expected), (i, eot)
        assert torch.equal(cond.pooled_text[i], cond.text[i, eot])
    # the pooled state projected into CLIP's joint space is exactly open_clip's text embedding, although our
    # context is 16 tokens and open_clip's 77: the causal transformer ignores what follows the EOT token
    model = reference_clip(tiny_clip[0])
    with torch.no_grad():
        expected = model.encode_text(tokens)
    torch.testing.assert_close(cond.pooled_text @ model.text_projection, expected, atol=1e-5, rtol=1e-5)

    empty = conditioner({"caption": [""]})
    assert empty.text_mask.sum() == 2  # start + end of text


def test_states_do_not_depend_on_context_length(conditioner, tiny_clip):
    long = make(tiny_clip, max_length=77)
    short_cond, long_cond = conditioner({"caption": CAPTIONS[:2]}), long({"caption": CAPTIONS[:2]})
    for i in range(2):
        n = int(short_cond.text_mask[i].sum())
        torch.testing.assert_close(short_cond.text[i, :n], long_cond.text[i, :n], atol=1e-5, rtol=1e-5)
        assert int(long_cond.text_mask[i].sum()) == n


def test_captions_change_the_states(conditioner):
    cond = conditioner({"caption": CAPTIONS})
    assert not torch.allclose(cond.pooled_text[0], cond.pooled_text[1])
    assert not torch.allclose(cond.text[0], cond.text[2])
    assert torch.equal(cond.text[0], cond.text[3])  # the same caption, the same states
    assert not torch.allclose(cond.pooled_text[0], conditioner.null(1).pooled_text[0])


def test_dropped_caption_equals_the_null_condition_exactly(conditioner):
    captions = [f"a shape number {i} moving" for i in range(16)]
    seed = 3
    dropped = torch.rand(16, generator=torch.Generator().manual_seed(seed)) < conditioner.drop_prob
    assert 0 < int(dropped.sum()) < 16
    cond = conditioner({"caption": captions}, train=True, generator=torch.Generator().manual_seed(seed))
    kept = conditioner({"caption": captions}, train=False)
    null = conditioner.null(16)
    for i in range(16):
        source = null if dropped[i] else kept
        assert torch.equal(cond.text[i], source.text[i]), i
        assert torch.equal(cond.text_mask[i], source.text_mask[i]), i
        assert torch.equal(cond.pooled_text[i], source.pooled_text[i]), i
    # the null condition is the encoder's states of the empty caption
    empty = conditioner({"caption": [""]})
    torch.testing.assert_close(null.select(slice(0, 1)).text, empty.text, atol=1e-6, rtol=0)
    assert torch.equal(null.text_mask[0], empty.text_mask[0])
    # no dropout outside training, and none with drop_prob 0
    assert torch.equal(conditioner({"caption": captions}, train=False).text, kept.text)
    # guidance batches (cond + null) concatenate
    assert cond.cat(conditioner.null(16)).text.shape == (32, MAX_LENGTH, TEXT_WIDTH)
    assert conditioner.supports_guidance


def test_sampling_condition(tiny_clip):
    conditioner = make(tiny_clip)
    with pytest.raises(ValueError, match="captions"):
        conditioner.for_sampling(2)  # nothing seen yet, nothing given
    with pytest.raises(ValueError, match="not labels"):
        conditioner.for_sampling(2, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected 2"):
        conditioner.for_sampling(2, captions=["one"])
    given = conditioner.for_sampling(2, captions=CAPTIONS[1:3])
    assert torch.equal(given.text, conditioner({"caption": CAPTIONS[1:3]}).text)
    # without captions: the distinct data captions seen so far (in the order first seen), in turn
    conditioner({"caption": CAPTIONS}, train=True, generator=torch.Generator().manual_seed(0))
    assert conditioner.remembered_captions == [CAPTIONS[1], CAPTIONS[2], CAPTIONS[0]]
    cycled = conditioner.for_sampling(4)
    expected = conditioner({"caption": [CAPTIONS[1], CAPTIONS[2], CAPTIONS[0], CAPTIONS[1]]})
    assert torch.equal(cycled.text, expected.text)


def test_batch_without_captions_fails_clearly(conditioner):
    with pytest.raises(KeyError, match="caption"):
        conditioner({"video": torch.zeros(2, 3, 4, 8, 8), "label": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="2 videos"):
        conditioner({"video": torch.zeros(2, 3, 4, 8, 8), "caption": ["only one"]})


def test_encoder_is_frozen_and_not_checkpointed(tiny_clip):
    conditioner = make(tiny_clip)
    assert all(not p.requires_grad for p in conditioner.parameters())
    assert sum(p.numel() for p in conditioner.parameters()) > 0
    assert not any(key.startswith("null") for key in conditioner.state_dict())  # cached, recomputed
    assert {"null_text", "null_mask", "null_pooled"} <= {name for name, _ in conditioner.named_buffers()}
    denoiser = Latte(
        size="tiny",
        depth=2,
        hidden_size=32,
        num_heads=2,
        in_channels=3,
        input_size=8,
        num_frames=4,
        learn_sigma=False,
    )
    from vidgen.autoencoders import build_autoencoder
    from vidgen.diffusion import build_diffusion

    module = VideoDiffusionModule(
        denoiser=denoiser,
        autoencoder=build_autoencoder("identity", latent_channels=3),
        conditioner=conditioner,
        diffusion=build_diffusion(num_timesteps=100, loss="simple", learn_sigma=False),
        video_shape=(3, 4, 8, 8),
        sampler={"name": "ddim", "steps": 2},
        optim={"lr": 1e-4},
        ema={"enabled": True, "decay": 0.9, "warmup": False},
    )
    module.train()  # what Lightning does at the start of fit
    assert module.conditioner.training and not conditioner.encoder.training
    assert "conditioner." in module._frozen_prefixes()
    checkpoint = {"state_dict": module.state_dict()}
    frozen = [k for k in checkpoint["state_dict"] if k.startswith("conditioner.")]
    assert frozen
    module.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("conditioner.") for k in checkpoint["state_dict"])
    restore_frozen_weights(module, checkpoint["state_dict"])  # what loading does
    assert sorted(k for k in checkpoint["state_dict"] if k.startswith("conditioner.")) == sorted(frozen)
    cond = conditioner({"caption": CAPTIONS[:2]}, train=True, generator=torch.Generator().manual_seed(0))
    assert not cond.text.requires_grad


def test_config_errors_name_the_key(tiny_clip, tmp_path):
    checkpoint, config = tiny_clip
    good = {"text_dim": TEXT_WIDTH, "path": str(checkpoint), "model_name": str(config), "max_length": 16}
    missing = tmp_path / "no_such_clip.bin"
    cases = [
        ({"path": str(missing)}, "conditioner.path", "no_such_clip.bin"),
        ({"text_dim": 48}, "conditioner.text_dim", str(TEXT_WIDTH)),
        ({"text_dim": 0}, "conditioner.text_dim", "> 0"),
        ({"max_length": 100}, "conditioner.max_length", "77"),
        ({"model_name": "no-such-architecture"}, "conditioner.model_name", "no-such-architecture"),
        ({"model_name": "hf-hub:org/model"}, "conditioner.model_name", "schema"),
        ({"path": None}, "conditioner.path", "checkpoint"),
    ]
    for change, key, text in cases:
        with pytest.raises(ConfigError) as info:
            build_conditioner("text", drop_prob=0.1, **{**good, **change})
        assert info.value.key == key and text in str(info.value), (change, str(info.value))
    with pytest.raises(ConfigError) as info:
        build_conditioner("class", num_classes=3, text_dim=8)
    assert info.value.key == "conditioner.text_dim"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["conditioner=text", "conditioner.text_dim=0"], "conditioner.text_dim"),
        (["conditioner=text", "conditioner.path=null"], "conditioner.path"),
        (["conditioner=text", "conditioner.max_length=1"], "conditioner.max_length"),
        (["conditioner=text", "conditioner.num_classes=3"], "conditioner.num_classes"),
        (["conditioner=none", "conditioner.text_dim=8"], "conditioner.text_dim"),
        (["conditioner=none", "conditioner.kind=words"], "conditioner.kind"),
    ],
)
def test_schema_names_the_key(overrides, key, tmp_path):
    cfg = compose_config(overrides, run_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert info.value.key == key, str(info.value)


def test_text_config_composes_and_builds_from_local_files(tiny_clip, tmp_path):
    checkpoint, config = tiny_clip
    cfg = compose_config(["conditioner=text"], run_dir=tmp_path)
    validate_config(cfg)
    assert cfg.conditioner.text_dim == 768 and cfg.conditioner.model_name == "ViT-L-14-quickgelu"
    for option in ("none", "class"):
        assert compose_config([f"conditioner={option}"], run_dir=tmp_path).conditioner.text_dim == 0
    overrides = [
        "conditioner=text",
        f"conditioner.path={checkpoint}",
        f"conditioner.model_name={config}",
        f"conditioner.text_dim={TEXT_WIDTH}",
    ]
    cfg = compose_config(overrides, run_dir=tmp_path)
    validate_config(cfg)
    built = instantiate_node(cfg.conditioner)
    assert isinstance(built, TextConditioner) and built.max_length == 77 and built.drop_prob == 0.1
    assert isinstance(built.null(2), Cond) and built.null(2).text.shape == (2, 77, TEXT_WIDTH)


def test_train_end_to_end_with_text(tiny_clip, tmp_path):
    from vidgen.lit.build import load_module_from_checkpoint
    from vidgen.lit.training import train

    checkpoint, config = tiny_clip
    overrides = [
        *TINY,
        "conditioner=text",
        f"conditioner.path={checkpoint}",
        f"conditioner.model_name={config}",
        f"conditioner.text_dim={TEXT_WIDTH}",
        f"conditioner.max_length={MAX_LENGTH}",
        "guidance_scale=2.0",
        "logger=csv",
    ]
    cfg = compose_config(overrides, run_dir=tmp_path / "run")
    assert cfg.model.text_dim == TEXT_WIDTH
    summary = train(cfg)
    assert summary["global_step"] == 6 and not summary["interrupted"]
    assert len(list((tmp_path / "run" / "samples" / "final").glob("sample_*.mp4"))) == 2
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("conditioner.") for k in state)  # the frozen encoder is not stored
    module, _ = load_module_from_checkpoint(last)  # re-read from conditioner.path
    generator = torch.Generator().manual_seed(0)
    videos = module.generate(
        2, generator=generator, captions=CAPTIONS[:2], sampler={"name": "ddim", "steps": 2}
    )
    assert videos.shape == (2, 3, 4, 16, 16) and torch.isfinite(videos).all()
    other = module.generate(
        2,
        generator=torch.Generator().manual_seed(0),
        captions=CAPTIONS[2:4],
        sampler={"name": "ddim", "steps": 2},
    )
    assert not torch.equal(videos, other)  # the captions reach the denoiser


def test_joint_training_images_get_their_own_captions_with_their_own_dropout(conditioner):
    """``image_captions`` in the default collate's layout (K sequences of B strings) -> ``cond.images``:
    each image's own caption's states, ``(B, K, L, D)``; in training each image drops independently."""
    from torch.utils.data import default_collate

    items = [
        {"caption": CAPTIONS[0], "image_captions": [CAPTIONS[1], CAPTIONS[2]]},
        {"caption": CAPTIONS[2], "image_captions": [CAPTIONS[0], CAPTIONS[1]]},
        {"caption": CAPTIONS[1], "image_captions": [CAPTIONS[2], CAPTIONS[0]]},
    ]
    batch = default_collate(items)
    cond = conditioner(batch)
    assert cond.images.text.shape == (3, 2, MAX_LENGTH, TEXT_WIDTH)
    assert cond.images.text_mask.shape == (3, 2, MAX_LENGTH) and cond.images.pooled_text.shape == (
        3,
        2,
        TEXT_WIDTH,
    )
    for b, item in enumerate(items):
        own = conditioner({"caption": item["image_captions"]})  # each image's caption on its own
        torch.testing.assert_close(cond.images.text[b], own.text)
        assert torch.equal(cond.images.text_mask[b], own.text_mask)
    torch.testing.assert_close(cond.text, conditioner({"caption": [i["caption"] for i in items]}).text)

    generator = torch.Generator().manual_seed(1)
    big = default_collate(items * 8)  # 24 clips, 48 images
    dropped = conditioner(big, train=True, generator=generator)  # drop_prob 0.5
    null = conditioner.null(1)
    image_drops = (dropped.images.text == null.text[:, None]).flatten(2).all(dim=2)  # (B, K)
    clip_drops = (dropped.text == null.text).flatten(1).all(dim=1)
    assert 0 < image_drops.sum() < image_drops.numel()
    assert not torch.equal(image_drops[:, 0], clip_drops) and not torch.equal(
        image_drops[:, 0], image_drops[:, 1]
    )
    with pytest.raises(ValueError, match="image_captions"):
        conditioner({"caption": CAPTIONS[:3], "image_captions": [CAPTIONS[:2]]})
