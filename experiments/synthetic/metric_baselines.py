"""Reference values of the in-domain metrics: real synthetic clips, uniform noise, and the real clips with
their frames shuffled, each scored against real clips under the same protocol as `vidgen.evaluate`.

    python experiments/synthetic/metric_baselines.py --frames 8 --resolution 16 --num 256
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vidgen.metrics.evaluator import evaluate
from vidgen.metrics.stats_cache import StatsCache
from vidgen.metrics.synthetic import SyntheticFVD, SyntheticStructure, synthetic_clips


def batches(videos: torch.Tensor, size: int = 64):
    for start in range(0, len(videos), size):
        yield {"video": videos[start : start + size]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--num", type=int, default=256)
    parser.add_argument("--cache-dir", default="outputs/cache")
    args = parser.parse_args()

    real, _ = synthetic_clips(args.num, args.frames, args.resolution, split="test")
    candidates, _ = synthetic_clips(args.num, args.frames, args.resolution, split="val")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, candidates.shape, generator=generator, dtype=torch.uint8)
    order = torch.stack([torch.randperm(args.frames, generator=generator) for _ in range(len(candidates))])
    shuffled = torch.stack([clip[perm] for clip, perm in zip(candidates, order)])

    rows = {}
    for name, fake in {"real clips": candidates, "shuffled frames": shuffled, "uniform noise": noise}.items():
        metrics = {
            "synthetic_fvd": SyntheticFVD(
                num_real=args.num,
                num_fake=args.num,
                num_frames=args.frames,
                resolution=args.resolution,
                cache_dir=args.cache_dir,
            ),
            "synthetic_structure": SyntheticStructure(num_fake=args.num),
        }
        result = evaluate(
            metrics,
            batches(fake),
            batches(real),
            cache=StatsCache(Path(args.cache_dir) / "real_stats"),
            dataset_key={
                "name": "synthetic",
                "split": "test",
                "num_frames": args.frames,
                "resolution": args.resolution,
            },
        )
        rows[name] = result["metrics"]
    keys = list(next(iter(rows.values())))
    print("| clips | " + " | ".join(k.replace("synthetic_structure/", "") for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{values[k]:.3f}" for k in keys) + " |")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
