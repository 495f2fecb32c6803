"""Parameters and FLOPs of Latte-XL variants 1-4, reconciled with the paper's Table 3 (seed 002).

``python experiments/latte/flops.py [--json out.json]``

Every model is built on the meta device (no memory, no compute) with the paper's setting: 4 latent
channels, patch 2, learn_sigma, unconditional, default switches (frame patches, adaLN, absolute temporal
table), 16 x 4 x 32 x 32 latents (a 256x256 16-frame clip through the SD VAE). Two counts per arm:

* ``gflops``: FLOPs of one forward of one clip by :func:`vidgen.models.latte.count_flops`
  (``torch.utils.flop_counter``): every matrix product (linears, convolutions, attention's ``QK^T`` and
  ``AV``), a multiply-add = 2 FLOPs. This is what one forward costs.
* ``thop_gmacs``: the paper's convention. Table 3's "FLOPs" are thop's multiply-accumulate count
  (``thop.profile``) of the official model on the official code's own test input, a batch of 3 clips:
  only ``nn.Linear`` (``in_features`` x output elements), convolutions (output elements x ``in / groups`` x
  kernel) and ``nn.LayerNorm`` (2 x input elements, doubled with an affine) modules are counted, so
  attention's matrix products are not. :func:`thop_macs` counts exactly that with forward hooks
  (checked against thop 0.1.1 itself: 5482.28 G for variant 1). The official code also computes each
  block's adaLN modulation for the conditioning vector repeated per frame (spatial blocks, final layer)
  or per patch (temporal blocks) instead of once per clip: :func:`official_adaln_extra_macs` is that
  extra work (variants 1 and 2, the layout of the official code). Variant 1's ours + extra is the
  paper's number.

Variant 3 is also listed at 23 blocks (``latte_v3_matched``, the depth whose parameter count is nearest
variant 1's). Parameter counts in M are truncated to two decimals, as the paper's tables are.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import nn

from vidgen.models.latte import BlockRole, Latte, count_flops

#: seed 002, Table 3 (Latte-XL; params in M, FLOPs in G)
PAPER_TABLE3 = {1: (673.68, 5572.69), 2: (673.68, 5572.69), 3: (676.33, 6153.15), 4: (676.44, 1545.15)}
#: the official code's ``__main__`` test input: 3 clips of 16 x 4 x 32 x 32 latents
OFFICIAL_BATCH = 3


def thop_macs(model: nn.Module, x_shape: tuple[int, ...]) -> int:
    """thop's multiply-accumulate count of one forward of ``model(x, t)`` on ``x_shape`` (works on the meta
    device): ``nn.Linear`` ``in_features * y.numel()``, convolutions (transposed too)
    ``y.numel() * in_channels / groups * prod(kernel)``, ``nn.LayerNorm`` ``2 * x.numel()`` (``4 *`` with
    an affine); every other module and every functional op (attention's products, softmax) 0."""
    total = [0]

    def linear(m: nn.Linear, args: tuple, y: torch.Tensor) -> None:
        total[0] += m.in_features * y.numel()

    def conv(m: nn.modules.conv._ConvNd, args: tuple, y: torch.Tensor) -> None:
        total[0] += y.numel() * (args[0].shape[1] // m.groups) * math.prod(m.weight.shape[2:])

    def norm(m: nn.LayerNorm, args: tuple, y: torch.Tensor) -> None:
        total[0] += 2 * args[0].numel() * (2 if m.elementwise_affine else 1)

    hooks = []
    for module in model.modules():
        if type(module) is nn.Linear:
            hooks.append(module.register_forward_hook(linear))
        elif isinstance(module, nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(conv))
        elif type(module) is nn.LayerNorm:
            hooks.append(module.register_forward_hook(norm))
    param = next(model.parameters())
    try:
        with torch.no_grad():
            x = torch.zeros(x_shape, device=param.device, dtype=param.dtype)
            model(x, torch.zeros(x_shape[0], device=param.device))
    finally:
        for hook in hooks:
            hook.remove()
    return total[0]


def official_adaln_extra_macs(model: Latte, x_shape: tuple[int, ...]) -> int:
    """The extra thop MACs of the official code's adaLN modulation (variants 1 / 2): it modulates with the
    conditioning vector repeated per frame in spatial blocks and the final layer (``B*F`` rows) and per
    patch in temporal blocks (``B*h*w`` rows), where once per clip (``B`` rows) gives the same values."""
    batch, _, frames, height, width = x_shape
    patches = (height // model.patch_size) * (width // model.patch_size)
    rows = {BlockRole.SPATIAL: batch * frames, BlockRole.TEMPORAL: batch * patches}
    extra = 0
    for block, role in zip(model.blocks, model.layout, strict=True):
        if role not in rows:
            raise ValueError(f"the official code has no {role.value} blocks (variants 1 and 2 only)")
        linear = block.adaLN_modulation[1]
        extra += (rows[role] - batch) * linear.in_features * linear.out_features
    linear = model.final_layer.adaLN_modulation[1]
    return extra + (batch * frames - batch) * linear.in_features * linear.out_features


def measure(frames: int = 16, size: int = 32) -> list[dict]:
    """One row per arm: variant, depth, params, GFLOPs of one clip, thop GMACs of the official batch, the
    official code's extra adaLN GMACs (variants 1 / 2), and the paper's numbers."""
    rows = []
    for variant, depth in [(1, None), (2, None), (3, None), (3, 23), (4, None)]:
        with torch.device("meta"):
            model = Latte(size="XL", depth=depth, variant=variant, input_size=size, num_frames=frames)
        batch_shape = (OFFICIAL_BATCH, 4, frames, size, size)
        extra = official_adaln_extra_macs(model, batch_shape) if variant in (1, 2) else None
        paper_params, paper_flops = PAPER_TABLE3[variant]
        rows.append(
            {
                "variant": variant,
                "depth": model.depth,
                "params": model.num_params(),
                "gflops": count_flops(model, (1, 4, frames, size, size)) / 1e9,
                "thop_gmacs": thop_macs(model, batch_shape) / 1e9,
                "official_adaln_extra_gmacs": None if extra is None else extra / 1e9,
                "paper_params_m": paper_params,
                "paper_gflops": paper_flops,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="latent height = width")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args.frames, args.size)
    print(f"Latte-XL, latents 4 x {args.frames} x {args.size} x {args.size}")
    print(
        "| variant | depth | params (ours) | params (paper) | GFLOPs, 1 clip (ours) | thop GMACs, 3 clips (ours) "
        "| + official adaLN | = | paper |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        extra = r["official_adaln_extra_gmacs"]
        added = "n/a" if extra is None else f"{extra:.2f}"
        total = "n/a" if extra is None else f"{r['thop_gmacs'] + extra:.2f}"
        print(
            f"| {r['variant']} | {r['depth']} | {r['params']:,} ({math.floor(r['params'] / 1e4) / 100:.2f}M) | "
            f"{r['paper_params_m']:.2f}M | {r['gflops']:.2f} | {r['thop_gmacs']:.2f} | {added} | {total} | "
            f"{r['paper_gflops']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
