"""CLIPSIM: a tiny randomly initialised open_clip model (small ViT + small text transformer) saved as a state dict
with its model-config JSON, loaded back through the metric's local-only path and compared with a direct
computation."""

from __future__ import annotations

from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tests.tiny_open_clip import NAME, forbid_open_clip_downloads, save_tiny_open_clip
from vidgen.metrics.clipsim import CLIP_CHECKPOINT, CLIPSIM
from vidgen.metrics.weights import MissingWeightsError

CAPTIONS = ["a dog runs on the beach", "a red car drives through the city at night"]


@pytest.fixture(autouse=True)
def forbid_downloads(monkeypatch):
    forbid_open_clip_downloads(monkeypatch)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> tuple[Path, Path]:
    return save_tiny_open_clip(tmp_path_factory.mktemp("clip"))


def sample_videos(n: int = 2, frames: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, frames, 40, 48, 3), generator=generator, dtype=torch.uint8)


def direct_clipsim(
    checkpoint: Path, videos: torch.Tensor, captions: list[str], frame_index: list[int]
) -> float:
    """Independent reference: the saved weights, CLIP's preprocessing written out, raw cosine averaged."""
    model = open_clip.create_model(NAME, pretrained=None, pretrained_text=False)
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    model.eval()
    preprocess = transforms.Compose(
        [
            transforms.Resize(32, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(32),
            transforms.ToTensor(),
            transforms.Normalize(open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD),
        ]
    )
    tokenizer = open_clip.tokenizer.SimpleTokenizer()
    per_video = []
    with torch.no_grad():
        for video, caption in zip(videos, captions):
            pixels = torch.stack([preprocess(Image.fromarray(video[i].numpy())) for i in frame_index])
            image = model.encode_image(pixels)
            text = model.encode_text(tokenizer([caption]))
            cosine = torch.nn.functional.cosine_similarity(image, text.expand_as(image), dim=-1)
            per_video.append(cosine.double().mean())
    return float(torch.stack(per_video).mean())


def test_clipsim_equals_direct_computation(tiny_clip):
    checkpoint, config = tiny_clip
    videos = sample_videos(frames=5)
    metric = CLIPSIM(
        model_name=NAME, checkpoint=checkpoint, model_config=config, frames_per_clip=3, device="cpu"
    )
    metric.update_fake(videos[:1], captions=CAPTIONS[:1])
    metric.update_fake(videos[1:], captions=CAPTIONS[1:])
    value = metric.compute()["clipsim"]
    assert value == pytest.approx(direct_clipsim(checkpoint, videos, CAPTIONS, [0, 2, 4]), abs=1e-5)
    assert -1.0 <= value <= 1.0

    every_frame = CLIPSIM(
        model_name=NAME, checkpoint=checkpoint, model_config=config, batch_size=4, device="cpu"
    )
    scores = every_frame.video_scores(videos, CAPTIONS)
    assert scores.shape == (2,)
    assert float(scores.mean()) == pytest.approx(
        direct_clipsim(checkpoint, videos, CAPTIONS, list(range(5))), abs=1e-5
    )
    assert ((scores >= -1) & (scores <= 1)).all()


def test_captions_are_required(tiny_clip):
    checkpoint, config = tiny_clip
    metric = CLIPSIM(model_name=NAME, checkpoint=checkpoint, model_config=config, device="cpu")
    with pytest.raises(ValueError, match="captions"):
        metric.update_fake(sample_videos())
    with pytest.raises(ValueError, match="one caption"):
        metric.update_fake(sample_videos(), captions=CAPTIONS[:1])
    with pytest.raises(ValueError, match="uint8"):
        metric.update_fake(sample_videos().float(), captions=CAPTIONS)


def test_missing_files_and_bad_config(tmp_path, monkeypatch, tiny_clip):
    monkeypatch.setenv("VIDGEN_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=rf"'clipsim'.*{CLIP_CHECKPOINT}"):
        CLIPSIM(device="cpu").update_fake(sample_videos(), captions=CAPTIONS)
    checkpoint, config = tiny_clip
    missing_config = CLIPSIM(model_name=NAME, checkpoint=checkpoint, model_config=tmp_path / "nope.json")
    with pytest.raises(MissingWeightsError, match="model-config"):
        for weight in missing_config.required_files():
            weight.check()
    wrong_name = CLIPSIM(model_name="other-name", checkpoint=checkpoint, model_config=config, device="cpu")
    with pytest.raises(ValueError, match="model_name"):
        wrong_name.update_fake(sample_videos(), captions=CAPTIONS)
    with pytest.raises(ValueError, match="schema"):
        CLIPSIM(model_name="hf-hub:org/model", checkpoint=checkpoint, device="cpu").update_fake(
            sample_videos(), captions=CAPTIONS
        )


def test_describe_says_raw_cosine():
    metric = CLIPSIM()
    assert metric.needs_real is False and metric.model_name == "ViT-B-32"
    assert "raw cosine" in metric.describe()["clipsim"]
