"""CLIPSIM: text-video alignment as the mean CLIP cosine similarity between frames and the caption.

For each generated video, every selected frame is embedded with the open_clip image encoder and the video's
caption with the text encoder; the score is the cosine similarity of the two (L2-normalised) embeddings,
averaged over the frames of the video, then over the videos (GODIVA / Make-A-Video / Latent-Shift: "frame-level"
CLIP similarity). The value is the RAW cosine, in ``[-1, 1]`` (typically about 0.2-0.35 for real caption-video
pairs); some papers report it multiplied by 100 (e.g. 29.5 instead of 0.295).

Weights come only from local files: ``checkpoint`` is passed to ``open_clip.create_model(model_name,
pretrained=<absolute path>)`` (never a pretrained tag, never ``hf-hub:``), so nothing is downloaded.
``model_config`` optionally names an open_clip model-config JSON (``embed_dim``, ``vision_cfg``, ``text_cfg``) for
architectures that open_clip does not ship; it is registered under its file stem, which must equal
``model_name``. Tokenizers that would be fetched from the Hugging Face hub are refused.

Input conversion (:func:`clip_frames`, the one place): uint8 ``(N, F, H, W, 3)`` -> ``frames_per_clip`` evenly
spaced frames (all when ``None``) -> PIL images -> open_clip's own evaluation transform of the model (resize of
the shortest side to the model's image size with its interpolation, bicubic for CLIP; centre crop; to
``[0, 1]``; normalise with the model's mean / std).

Default weights: ``ViT-B-32`` with the LAION-2B checkpoint (open_clip tag ``laion2b_s34b_b79k``), stored as
:data:`CLIP_CHECKPOINT`. Get it from the Hugging Face repository ``laion/CLIP-ViT-B-32-laion2B-s34B-b79K``
(file ``open_clip_pytorch_model.bin``, about 605 MB) and rename it. To use OpenAI's CLIP ViT-B/32 (the CLIP of
most published CLIPSIM numbers), set ``model_name=ViT-B-32-quickgelu`` (OpenAI weights need QuickGELU) and point
``checkpoint`` at its open_clip file (HF ``timm/vit_base_patch32_clip_224.openai``,
``open_clip_pytorch_model.bin``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vidgen.conditioning.open_clip_loader import create_open_clip
from vidgen.metrics.base import VideoMetric, check_uint8_videos
from vidgen.metrics.inception import evenly_spaced_indices, resolve_device
from vidgen.metrics.weights import WeightFile

__all__ = ["CLIPSIM", "CLIP_CHECKPOINT", "clip_frames", "load_open_clip"]

#: conventional file name of the default open_clip checkpoint (ViT-B-32, LAION-2B s34B b79K)
CLIP_CHECKPOINT = "open_clip_vit_b_32_laion2b.bin"


def _describe_checkpoint(model_name: str) -> str:
    return (
        f"open_clip checkpoint (state dict) for architecture '{model_name}'; the default is ViT-B-32 LAION-2B "
        "(HF repository laion/CLIP-ViT-B-32-laion2B-s34B-b79K, file open_clip_pytorch_model.bin, renamed)"
    )


def clip_frames(videos: torch.Tensor, frames_per_clip: int | None, transform: Any) -> torch.Tensor:
    """Videos -> CLIP image-encoder input.

    Args:
        videos: ``(N, F, H, W, 3)`` uint8.
        frames_per_clip: frames per clip, evenly spaced (``None``: all).
        transform: open_clip's evaluation transform of the model (PIL image -> normalised ``(3, S, S)``).

    Returns:
        ``(N, k, 3, S, S)`` float32.
    """
    check_uint8_videos(videos, "clipsim", min_frames=frames_per_clip or 1)
    index = evenly_spaced_indices(videos.shape[1], frames_per_clip).to(videos.device)
    frames = videos.index_select(1, index).cpu().numpy()
    n, k = frames.shape[:2]
    pixels = [
        transform(Image.fromarray(np.ascontiguousarray(frame)))
        for frame in frames.reshape(n * k, *frames.shape[2:])
    ]
    stacked = torch.stack(pixels)
    return stacked.view(n, k, *stacked.shape[1:])


def load_open_clip(
    model_name: str, checkpoint: Path, model_config: Path | None = None, device: torch.device | str = "cpu"
) -> tuple[Any, Any, Any]:
    """Build an open_clip model from a local checkpoint only; returns ``(model, transform, tokenizer)``.

    ``model`` is in eval mode on ``device``; ``transform`` is open_clip's evaluation transform for it;
    ``tokenizer`` maps a list of captions to ``(B, context_length)`` token ids. The loading itself is
    :func:`vidgen.conditioning.open_clip_loader.create_open_clip` (shared with the text conditioner).
    """
    from open_clip.transform import PreprocessCfg, image_transform_v2

    loaded = create_open_clip(model_name, checkpoint, model_config, device, who="clipsim")
    transform = image_transform_v2(PreprocessCfg(**loaded.model.visual.preprocess_cfg), is_train=False)
    return loaded.model, transform, loaded.tokenizer


class CLIPSIM(VideoMetric):
    """Mean CLIP cosine similarity between the frames of generated videos and their captions (raw, not x100).

    Args (config keys):
        model_name: open_clip architecture (default ``ViT-B-32``).
        checkpoint: local open_clip checkpoint (default :data:`CLIP_CHECKPOINT`, under ``$VIDGEN_WEIGHTS``).
        model_config: optional open_clip model-config JSON for an architecture open_clip does not ship (its
            file stem must equal ``model_name``).
        num_fake: generated clips scored (default 2048; MSR-VTT zero-shot protocols use every test caption).
        frames_per_clip: frames per clip, evenly spaced; ``None`` = every frame.
        batch_size: frames per image-encoder call (and captions per text-encoder call).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...

    ``update_fake`` needs ``captions`` (one per video). Result: ``{"clipsim": value}``.
    """

    name = "clipsim"
    needs_real = False

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        checkpoint: str | Path = CLIP_CHECKPOINT,
        model_config: str | Path | None = None,
        num_fake: int = 2048,
        frames_per_clip: int | None = None,
        batch_size: int = 64,
        device: str = "auto",
    ) -> None:
        for key, value in {
            "num_fake": num_fake,
            "frames_per_clip": frames_per_clip,
            "batch_size": batch_size,
        }.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"clipsim: '{key}' must be a positive integer, got {value!r}")
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(
                f"clipsim: 'model_name' must be an open_clip architecture name, got {model_name!r}"
            )
        self.model_name = model_name
        self.checkpoint = Path(checkpoint)
        self.model_config = Path(model_config) if model_config is not None else None
        self.num_fake = num_fake
        self.frames_per_clip = frames_per_clip
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self._loaded: tuple[Any, Any, Any] | None = None
        self._scores: list[torch.Tensor] = []

    def describe(self) -> dict[str, str]:
        frames = (
            "all frames" if self.frames_per_clip is None else f"{self.frames_per_clip} evenly spaced frames"
        )
        return {
            "clipsim": (
                f"CLIPSIM, raw cosine (not x100) of open_clip {self.model_name} frame and caption embeddings, "
                f"mean over {frames} and {self.num_fake} videos"
            )
        }

    def required_files(self) -> list[WeightFile]:
        files = [
            WeightFile(
                path=self.checkpoint, metric=self.name, description=_describe_checkpoint(self.model_name)
            )
        ]
        if self.model_config is not None:
            files.append(
                WeightFile(
                    path=self.model_config,
                    metric=self.name,
                    description=f"open_clip model-config JSON of architecture '{self.model_name}'",
                )
            )
        return files

    def _model(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            paths = [weight.check() for weight in self.required_files()]
            config = paths[1] if len(paths) > 1 else None
            self._loaded = load_open_clip(self.model_name, paths[0], config, self.device)
        return self._loaded

    def update_real(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        raise RuntimeError("clipsim: scores generated videos only (needs_real is False)")

    @torch.no_grad()
    def video_scores(self, videos: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Per-video CLIPSIM ``(N,)`` float64: mean over the selected frames of cos(frame, caption)."""
        check_uint8_videos(videos, self.name, min_frames=self.frames_per_clip or 1)
        if captions is None:
            raise ValueError("clipsim: update_fake needs captions (one per video)")
        captions = list(captions)
        if len(captions) != videos.shape[0] or not all(isinstance(c, str) for c in captions):
            raise ValueError(
                f"clipsim: need one caption string per video; got {len(captions)} for {videos.shape[0]}"
            )
        model, transform, tokenizer = self._model()
        pixels = clip_frames(videos, self.frames_per_clip, transform)  # (N, k, 3, S, S)
        n, k = pixels.shape[:2]
        image = torch.cat(
            [
                model.encode_image(chunk.to(self.device), normalize=True).float()
                for chunk in pixels.flatten(0, 1).split(self.batch_size)
            ]
        )
        tokens = tokenizer(captions)
        text = torch.cat(
            [
                model.encode_text(chunk.to(self.device), normalize=True).float()
                for chunk in tokens.split(self.batch_size)
            ]
        )
        cosine = (image.view(n, k, -1) * text.unsqueeze(1)).sum(dim=-1)  # (N, k)
        return cosine.double().mean(dim=1).cpu()

    def update_fake(
        self, videos: torch.Tensor, labels: torch.Tensor | None = None, captions: Sequence[str] | None = None
    ) -> None:
        if captions is None:
            raise ValueError("clipsim: update_fake needs captions (one per video)")
        self._scores.append(self.video_scores(videos, captions))

    def compute(self) -> dict[str, float]:
        if not self._scores:
            raise RuntimeError("clipsim: no generated videos seen")
        return {"clipsim": float(torch.cat(self._scores).mean())}
