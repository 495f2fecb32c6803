"""Parameters and FLOPs of Latte-XL variants 1-4 next to the paper's Table 3 (seed 002).

``python experiments/latte/flops.py [--frames 16 --size 32 --batch 1] [--json out.json]``

Every model is built on the meta device (no memory, no compute) with the paper's setting: 4 latent
channels, patch 2, learn_sigma, unconditional, default switches (frame patches, adaLN, absolute temporal
table), 16 x 4 x 32 x 32 latents (a 256x256 16-frame clip through the SD VAE), batch 1. FLOPs are counted
by :func:`vidgen.models.latte.count_flops` (``torch.utils.flop_counter.FlopCounterMode``): matrix
multiplications only (linears, convolutions, attention's ``QK^T`` and ``AV``), a multiply-add = 2 FLOPs.
Variant 3 is also listed at 23 blocks, the depth whose parameter count is nearest the paper's. Parameter
counts in M are truncated to two decimals, as the paper's tables are.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from vidgen.models.latte import Latte, count_flops

#: seed 002, Table 3 (Latte-XL; params in M, FLOPs in G)
PAPER_TABLE3 = {1: (673.68, 5572.69), 2: (673.68, 5572.69), 3: (676.33, 6153.15), 4: (676.44, 1545.15)}


def measure(frames: int = 16, size: int = 32, batch: int = 1) -> list[dict]:
    """One row per arm: variant, depth, params, GFLOPs of one forward, and the paper's numbers."""
    rows = []
    for variant, depth in [(1, None), (2, None), (3, None), (3, 23), (4, None)]:
        with torch.device("meta"):
            model = Latte(size="XL", depth=depth, variant=variant, input_size=size, num_frames=frames)
        flops = count_flops(model, (batch, 4, frames, size, size))
        paper_params, paper_flops = PAPER_TABLE3[variant]
        rows.append(
            {
                "variant": variant,
                "depth": model.depth,
                "params": model.num_params(),
                "gflops": flops / 1e9,
                "paper_params_m": paper_params,
                "paper_gflops": paper_flops,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="latent height = width")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = measure(args.frames, args.size, args.batch)
    print(
        f"Latte-XL, latents {args.batch} x 4 x {args.frames} x {args.size} x {args.size} (multiply-add = 2 FLOPs)"
    )
    print("| variant | depth | params (ours) | params (paper) | GFLOPs (ours) | GFLOPs (paper) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['depth']} | {r['params']:,} ({math.floor(r['params'] / 1e4) / 100:.2f}M) | "
            f"{r['paper_params_m']:.2f}M | {r['gflops']:.2f} | {r['paper_gflops']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
