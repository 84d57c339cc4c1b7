"""The chapter-1 oracle: per-attribute accuracy on held-out test scenes, and its training speed.

Run: .venv/bin/python benchmarks/oracle_accuracy.py [--steps 1500] [--test 10000] [--speed-steps 20]
Accuracy: the oracle for --steps is loaded from the minigen cache (trained and cached first if
absent, as chapter 1 does). Speed: training steps/s of a fresh oracle in fp32 and under bf16
autocast, measured back to back in this run (compare the ratio; the machine is shared).
Target: over 98% per attribute (shape, colour, size, cell) with the cpu-profile budget (1500 steps).
"""

import argparse

import torch

from minigen.core.runtime import Precision, choose_precision, cpu_supports_bf16
from minigen.data.shapes import ShapesWorld
from minigen.models.oracle import evaluate, load_oracle, train_oracle

TARGET = 0.98


def steps_per_second(world: ShapesWorld, precision: Precision, steps: int) -> float:
    _, history = train_oracle(world, steps, precision=precision, progress=False)
    return steps / history.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=1500,
        help="training steps of 128 scenes (cpu profile: 1500)",
    )
    parser.add_argument(
        "--test", type=int, default=10_000, help="test scenes to evaluate on"
    )
    parser.add_argument(
        "--speed-steps",
        type=int,
        default=20,
        help="steps per precision for the speed figure",
    )
    args = parser.parse_args()
    world = ShapesWorld()

    oracle = load_oracle(world, steps=args.steps)
    scores = evaluate(oracle, world.scenes(args.test, split="test"))
    print(
        f"oracle, {args.steps} steps ({oracle.history.seconds:.0f} s when trained), {args.test} test scenes:"
    )
    for name, value in scores.items():
        print(f"  {name:7} {100 * value:6.2f}%")
    met = all(scores[name] > TARGET for name in ("shape", "colour", "size", "cell"))
    print(
        f"  target: every attribute above {100 * TARGET:.0f}%: {'met' if met else 'NOT met'}"
    )

    device = choose_precision().device
    precisions = [Precision(device, torch.float32)]
    if device.type == "cuda" or cpu_supports_bf16():
        precisions.append(choose_precision(device))
    speeds = {
        str(p): steps_per_second(world, p, args.speed_steps) for p in precisions
    }
    for name, speed in speeds.items():
        print(
            f"training speed, {name}: {speed:.2f} steps/s ({128 * speed:,.0f} scenes/s)"
        )
    if len(speeds) == 2:
        fp32, mixed = speeds.values()
        print(f"speed-up of {list(speeds)[1]} over fp32: {mixed / fp32:.2f}x")


if __name__ == "__main__":
    main()
