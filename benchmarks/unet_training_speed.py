"""Chapter 5's U-Net training speed (images/s): bf16 against fp32 on this CPU, or this
checkout against another, in one run.

    .venv/bin/python benchmarks/unet_training_speed.py --dtypes fp32 bf16
    .venv/bin/python benchmarks/unet_training_speed.py --against /tmp/old_minigen

Each measurement runs in a fresh subprocess that imports minigen from one checkout and times
training steps of the chapter's U-Net (base 16, mults 1-2-2, attention at 8x8, (shape, colour)
labels, batch 32 at 32x32, AdamW) in bf16 autocast (where the CPU has bf16 instructions) and in
fp32. Rounds alternate between the settings, so slow phases of a shared machine hit all of
them; the table reports the median images/s per setting and the paired ratio per round
(this/other, or bf16/fp32 without --against: what `choose_precision` decides on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import torch
import minigen
torch.manual_seed(0)
dtype, steps, warmup = sys.argv[1], int(sys.argv[2]), 5
model = minigen.UNet(base_channels=16, channel_mults=(1, 2, 2), attention_levels=(2,),
                     class_counts=(5, 6))
precision = minigen.choose_precision("cpu", dtype)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
x0 = torch.rand(32, 3, 32, 32) * 2 - 1
labels = torch.stack([torch.randint(5, (32,)), torch.randint(6, (32,))], dim=1)
def step():
    t = torch.randint(1000, (32,))
    noise = torch.randn_like(x0)
    x_t = 0.7 * x0 + 0.7 * noise
    with precision.autocast():
        loss = (model(x_t, t, labels).float() - noise).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
for _ in range(warmup):
    step()
start = time.perf_counter()
for _ in range(steps):
    step()
print(json.dumps({"images_per_s": 32 * steps / (time.perf_counter() - start)}))
"""


def measure(root: Path, dtype: str, steps: int) -> float:
    env_path = str(root)
    result = subprocess.run(
        [sys.executable, "-c", WORKER, dtype, str(steps)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
        cwd=root,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout of the repository (e.g. a git worktree); without it, "
        "the precisions of this checkout are compared",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        choices=["fp32", "bf16"],
        help="default: fp32, and bf16 where the CPU has bf16 instructions (without "
        "them bf16 autocast still runs, emulated and slow: a comparison of two "
        "checkouts, not a choice of precision)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import minigen

    native = ["fp32"] + (["bf16"] if minigen.cpu_supports_bf16() else [])
    dtypes = args.dtypes or native
    roots = {"this": ROOT}
    if args.against:
        roots["other"] = args.against.resolve()
    speeds: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for dtype in dtypes:
            for name, root in roots.items():
                speed = measure(root, dtype, args.steps)
                speeds.setdefault((name, dtype), []).append(speed)
                print(
                    f"round {round_ + 1}: {name:5s} {dtype}: {speed:6.1f} images/s",
                    flush=True,
                )
    print(
        f"\nU-Net training, batch 32 at 32x32, {args.rounds} rounds x {args.steps} steps;"
        f" bf16 instructions: {minigen.cpu_supports_bf16()}, "
        f"AMX: {amx()}"
    )
    if args.against:
        print_pairs(speeds, [(("this", d), ("other", d), d) for d in dtypes])
    elif len(dtypes) == 2:
        print_pairs(speeds, [(("this", "bf16"), ("this", "fp32"), "bf16/fp32")])
    else:
        for (_, dtype), values in speeds.items():
            print(f"{dtype}: median {statistics.median(values):.1f} images/s")


def amx() -> bool:
    """Whether this CPU has Intel AMX tiles (a private torch helper, hence getattr)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def print_pairs(speeds: dict, pairs: list) -> None:
    """Each pair's median images/s and its ratio within each round (both settings
    saw the same machine load)."""
    print(
        f"{'pair':>9s} {'first':>8s} {'second':>8s} {'paired ratios':>20s} {'median':>7s}"
    )
    for first, second, name in pairs:
        a, b = speeds[first], speeds[second]
        ratios = [x / y for x, y in zip(a, b)]
        shown = " ".join(f"{r:.2f}" for r in ratios)
        print(
            f"{name:>9s} {statistics.median(a):8.1f} {statistics.median(b):8.1f} "
            f"{shown:>20s} {statistics.median(ratios):7.3f}"
        )


if __name__ == "__main__":
    main()
