"""How fast the shapes world draws scenes on this machine: images per second, labels and captions included.

Run: .venv/bin/python benchmarks/render_throughput.py [--batch 4096] [--repeats 7] [--threads 2]
Each figure is the median over `repeats` batches of fresh indices, after one warm-up batch.
"""

import argparse
import platform
import statistics
import time

import torch

from minigen.data.shapes import ShapesWorld, render

TARGET_32 = 20_000  # images/s wanted at 32x32 on a 2-core CPU


def median_seconds(step, repeats: int) -> float:
    """Median wall time of step(r) over r = 1..repeats, after a warm-up call step(0)."""
    step(0)
    times = []
    for repeat in range(1, repeats + 1):
        start = time.perf_counter()
        step(repeat)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="torch threads (default: all)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"batch {args.batch}, median of {args.repeats} repeats")
    for resolution in (32, 64):
        world = ShapesWorld(resolution=resolution)

        def indices(repeat: int) -> range:  # fresh scenes for every repeat
            return range(repeat * args.batch, (repeat + 1) * args.batch)

        labels = [
            world.sample_labels(indices(repeat))
            for repeat in range(args.repeats + 1)
        ]

        def render_only(repeat: int) -> None:
            drawn = labels[repeat]
            render(
                drawn.shape,
                drawn.colour,
                drawn.size,
                drawn.cell,
                drawn.offset,
                resolution=resolution,
            )

        scenes_per_s = args.batch / median_seconds(
            lambda repeat: world.scenes(indices(repeat)), args.repeats
        )
        render_per_s = args.batch / median_seconds(render_only, args.repeats)
        print(
            f"{resolution}x{resolution}: world.scenes {scenes_per_s:9,.0f} images/s",
            end="   ",
        )
        print(f"render alone {render_per_s:9,.0f} images/s")
        if resolution == 32:
            print(
                f"  target {TARGET_32:,} images/s at 32x32: {'met' if scenes_per_s > TARGET_32 else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
