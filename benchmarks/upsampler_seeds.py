"""Chapter 2's learned x2 upsamplers over training seeds: which differences are real?

Run: MINIGEN_PROFILE=cpu .venv/bin/python benchmarks/upsampler_seeds.py
         [--seeds 0 1 2] [--steps 1000] [--test 512] [--json FILE]

For each seed and each upsampler of `resample.UPSAMPLERS`: train the chapter's small
super-resolution network (`upsampler.train_upsampler`, the chapter's defaults) for
--steps steps, then measure on --test test scenes what the chapter measures
(`upsampler.evaluate_upsampler`): the mean PSNR (dB) of the restored scenes, their
checkerboard score, and the checkerboard score of the model's output for a flat grey
image. Plain bilinear resizing, which has no seed, is the baseline. Printed per run,
then per upsampler as mean ± standard deviation over the seeds, with the gain over
bilinear and each upsampler's rank.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minigen.core.runtime import choose_precision, cpu_name
from minigen.data.shapes import ShapesWorld
from minigen.eval import metrics
from minigen.models import upsampler
from minigen.nn import resample
from minigen.results import run_record


def mean_sd(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):6.2f} ± {spread:4.2f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--test", type=int, default=512, help="test scenes")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    world = ShapesWorld()
    precision = choose_precision()
    truth = world.scenes(args.test, split="test").images  # (N, 3, 32, 32)
    low = upsampler.downsample(truth)  # (N, 3, 16, 16)
    bilinear = F.interpolate(low, scale_factor=2, mode="bilinear")
    baseline = metrics.psnr(bilinear, truth).mean().item()
    print(
        f"{cpu_name()}, {torch.get_num_threads()} threads, {precision}; "
        f"{args.steps} steps, {args.test} test scenes; bilinear {baseline:.2f} dB"
    )
    print(
        f"{'seed':>4} {'upsampler':22} {'PSNR':>6} {'score':>7} {'grey':>7} {'s':>6}"
    )
    runs = []
    for seed in args.seeds:
        for name in resample.UPSAMPLERS:
            started = time.perf_counter()
            model, history = upsampler.train_upsampler(
                name, world, steps=args.steps, seed=seed, precision=precision,
                progress=False,
            )  # fmt: skip
            scores = upsampler.evaluate_upsampler(model, truth)
            row = {"seed": seed, "upsampler": name} | scores
            row["train s"] = history.seconds
            runs.append(row)
            print(
                f"{seed:4d} {name:22} {row['psnr']:6.2f} {row['score']:7.4f} "
                f"{row['grey']:7.4f} {time.perf_counter() - started:6.1f}",
                flush=True,
            )
    print(f"\nmean ± standard deviation over seeds {args.seeds}")
    print(f"{'upsampler':22} {'PSNR (dB)':>13} {'gain (dB)':>13} {'grey':>13}")
    for name in resample.UPSAMPLERS:
        mine = [run for run in runs if run["upsampler"] == name]
        psnrs = [run["psnr"] for run in mine]
        gains = [value - baseline for value in psnrs]
        greys = [run["grey"] for run in mine]
        print(f"{name:22} {mean_sd(psnrs)} {mean_sd(gains)} {mean_sd(greys)}")
    for seed in args.seeds:
        ranked = sorted(
            (run for run in runs if run["seed"] == seed), key=lambda r: -r["psnr"]
        )
        print(f"seed {seed} ranking: " + " > ".join(r["upsampler"] for r in ranked))
    if args.json:
        record = run_record(args) | {
            "precision": str(precision),
            "bilinear psnr": baseline,
            "runs": runs,
        }
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
