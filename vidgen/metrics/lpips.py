"""LPIPS (Zhang et al. 2018, VGG16 variant) with the VGG16 backbone read from a local weights file.

torchmetrics implements the network and ships LPIPS's learned linear calibration (lpips v0.1, ``vgg.pth``)
inside its package; the ImageNet weights of the VGG16 backbone are not shipped (torchvision would download
them). :func:`build_lpips_vgg` takes them from a local file instead: torchvision's ``vgg16-397923af.pth`` (the
whole model's state dict) or any state dict holding VGG16's ``features.*`` tensors. Used by CMD's stage-1
``cmd.loss=l1_lpips`` (the released code's pixel loss). torchmetrics' network class is private API
(``torchmetrics.functional.image.lpips._NoTrainLpips``, torchmetrics 1.x); a change there fails loudly here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from vidgen.config.errors import ConfigError


def build_lpips_vgg(weights_path: str | Path | None, key: str = "cmd.lpips_vgg_weights") -> nn.Module:
    """A frozen LPIPS-VGG network ``lpips(a, b) -> (N, 1, 1, 1)`` for images ``(N, 3, H, W)`` in [-1, 1].

    Raises:
        ConfigError: naming ``key`` when the file is missing, holds no VGG16 ``features.*`` tensors, or its
            tensors do not fit VGG16.
    """
    if weights_path is None or not Path(str(weights_path)).is_file():
        raise ConfigError(
            key,
            f"the VGG16 weights file '{weights_path}' does not exist; LPIPS needs torchvision's ImageNet VGG16 "
            "weights as a local file (vgg16-397923af.pth, from torchvision's model zoo)",
        )
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    lpips = _NoTrainLpips(net="vgg", pretrained=True, pnet_rand=True)  # calibration from torchmetrics' file
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    features = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise ConfigError(key, f"'{weights_path}' holds no VGG16 'features.*' tensors")
    backbone = {}
    for slice_name, layers in lpips.net.named_children():  # slice1..slice5 hold VGG16's features[0..29]
        for index, layer in layers.named_children():
            for param in layer.state_dict():
                source = f"{index}.{param}"
                if source not in features:
                    raise ConfigError(key, f"'{weights_path}' lacks features.{source} of VGG16")
                backbone[f"{slice_name}.{index}.{param}"] = features[source]
    try:
        lpips.net.load_state_dict(backbone, strict=True)
    except RuntimeError as error:
        raise ConfigError(key, f"'{weights_path}' does not fit VGG16: {error}") from None
    return lpips.requires_grad_(False).eval()
