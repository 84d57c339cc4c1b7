"""What drives the Fréchet oracle distance of chapter 5's samples?

Run: .venv/bin/python benchmarks/fd_anatomy.py --model FILE [--base 16] [--samples 500]
     (FILE: EMA weights saved by `diffusion_seeds.py --save-models DIR`)

Prints, for unconditional DDIM-50 samples of that model and real test scenes:
1. the floor (real against other real scenes) at several sample counts: the distance
   of two samples of one distribution is not 0 but a bias that shrinks as 1/N, so
   distances are comparable only at equal N;
2. the two terms of the distance (means, covariances) and its bootstrap interval;
3. the distance of the samples the oracle reads as valid scenes and of the others:
   does the distance see what the valid share sees?
4. the distance after dropping the samples farthest from the real scenes (squared
   Mahalanobis distance under the real Gaussian): is it driven by a few outliers?
5. the distance with the cell features side by side (pool="cells", 9x more
   dimensions) instead of averaged over the cells;
6. the total variation distance of the shapes, colours, sizes and cells read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from minigen import diffusion
from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld
from minigen.eval import harness, metrics
from minigen.models.oracle import load_oracle, parse
from minigen.models.unet import UNet


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="EMA weights")
    parser.add_argument("--base", type=int, default=16, help="U-Net base channels")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--oracle-steps", type=int, default=1500)
    return parser.parse_args()


def load_samples(args, world: ShapesWorld) -> torch.Tensor:
    model = UNet(
        base_channels=args.base,
        class_counts=(len(world.shapes), len(world.colours)),
    )
    model.load_state_dict(torch.load(args.model, weights_only=True))
    options = diffusion.SamplerOptions(objective="v")
    images, _ = harness.sample_images(
        model.eval(), diffusion.NoiseSchedule.cosine(), args.samples, options,
        steps=50, seed=0, precision=choose_precision("cpu", "fp32"),
    )  # fmt: skip
    return images


def mahalanobis(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N,) squared Mahalanobis distances of features under reference's Gaussian."""
    mean, covariance = metrics.gaussian_stats(reference)
    precision = torch.linalg.pinv(covariance)
    centred = features.double() - mean
    return (centred @ precision * centred).sum(1)


def main() -> None:
    args = parse_args()
    world = ShapesWorld(max_objects=1)
    judge = load_oracle(ShapesWorld(), steps=args.oracle_steps)
    n = args.samples
    real = world.scenes(range(4 * n), split="test").images
    samples = load_samples(args, world)
    real_f = metrics.oracle_features(judge, real)
    sample_f = metrics.oracle_features(judge, samples)
    reference = real_f[:n]

    print(f"1. floor, real vs other real scenes ({real_f.shape[1]} features):")
    for count in (n // 5, n // 2, n, 2 * n):
        floor = metrics.frechet_distance_of(real_f[:count], real_f[2 * n :][:count])
        print(f"   N = {count:5d}: {floor:6.3f}   N x floor = {count * floor:5.0f}")

    terms = metrics.frechet_terms(reference, sample_f)
    low, high = metrics.frechet_interval(reference, sample_f)
    print(
        f"2. samples (N = {n}): FD {terms['total']:.2f} (95% bootstrap {low:.2f}-"
        f"{high:.2f}) = means {terms['mean']:.2f} + covariances "
        f"{terms['covariance']:.2f}"
    )

    valid = parse(judge, samples)["valid"]
    print(f"3. {int(valid.sum())} of {n} samples read as valid scenes")
    for name, rows in (("valid", valid), ("not valid", ~valid)):
        if rows.sum() >= 2:
            terms = metrics.frechet_terms(reference, sample_f[rows])
            print(
                f"   {name:9s} only: FD {terms['total']:6.2f} (means "
                f"{terms['mean']:.2f})"
            )

    distances = mahalanobis(sample_f, real_f[n:])
    print(
        "4. squared Mahalanobis distance, median: samples "
        f"{distances.median():.0f}, real {mahalanobis(reference, real_f[n:]).median():.0f}"
    )
    order = distances.argsort(descending=True)
    for dropped in (0, n // 100, n // 20, n // 5):
        fd = metrics.frechet_distance_of(reference, sample_f[order[dropped:]])
        print(f"   without the {dropped:3d} farthest samples: FD {fd:6.2f}")

    cells = {
        name: metrics.oracle_features(judge, images, pool="cells")
        for name, images in (("real", real[: 2 * n]), ("samples", samples))
    }
    cell_floor = metrics.frechet_distance_of(cells["real"][:n], cells["real"][n:])
    cell_fd = metrics.frechet_distance_of(cells["real"][:n], cells["samples"])
    print(
        f"5. cells side by side ({cells['real'].shape[1]} features): floor "
        f"{cell_floor:.1f}, samples {cell_fd:.1f} ({cell_fd / cell_floor:.1f}x the "
        "floor)"
    )

    tv = harness.score_images(judge, samples, real[:n])["tv"]
    shown = ", ".join(f"{name} {100 * value:.1f}%" for name, value in tv.items())
    print(f"6. total variation distance of the attributes read: {shown}")


if __name__ == "__main__":
    main()
