"""Chapter 5's diffusion recipe over seeds and precisions: a result, or an anecdote?

Run: .venv/bin/python benchmarks/diffusion_seeds.py [--seeds 0 1 2] [--dtypes fp32 bf16]
         [--steps 2500] [--base 16] [--lr 1e-3] [--warmup 0] [--batch 32]
         [--ema-decay 0.995] [--ema-warmup] [--cond-dropout 0.2]
         [--min-snr GAMMA] [--objective v] [--samples 500] [--sample-steps 50]
         [--eta 0] [--also-eta 1]
         [--guidance-scales 0 1 2 4 8] [--guided-samples 300] [--guided-steps 20]
         [--judge-every 500] [--curve-samples 250] [--save-models DIR]
         [--json FILE]

For each precision and seed: train the chapter's class-conditional U-Net on
single-object scenes with the recipe given by the options (defaults: the chapter's:
cosine schedule, v-prediction, AdamW at lr 1e-3 with cosine decay, batch 32,
condition dropout 0.2, EMA 0.995), then judge the EMA model with the chapter-1 oracle:
- unconditional DDIM samples: the share read as valid scenes (with its 95% Wilson
  interval), the Frechet oracle distance to as many real test scenes (with its 95%
  bootstrap interval), the total variation distance (%) of the shapes, colours, sizes
  and cells read to those of the real scenes, and the floor
  (real against other real scenes);
- guided samples (w = 2, DDIM), every (shape, colour) request in turn: the share whose
  first object has the requested shape, and colour;
- with --also-eta, the unconditional scores again at other DDIM etas;
- with --guidance-scales, chapter 5's guidance table: --guided-samples samples
  (DDIM, --guided-steps steps, sampling seed 2) per scale, every request in turn, and
  the share whose first object has the requested shape, colour, and valid scenes;
- the training wall time;
- with --judge-every N, the same scores on fewer samples every N training steps:
  sample quality against training steps.
The seed sets the initial weights, the timesteps, the noise and the condition dropout;
every run sees the same scenes in the same order, and sampling uses the same seeds.
Printed per run, then per precision as mean ± standard deviation over the seeds and
the range, beside the targets of issue 10. bf16 on a CPU without bf16 instructions
(`lscpu`: amx or avx512_bf16) is emulated and slow: it still shows whether the
rounding changes the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from minigen import diffusion
from minigen.core.runtime import choose_precision, cpu_supports_bf16
from minigen.data.shapes import ShapesWorld
from minigen.eval import harness, metrics
from minigen.models.oracle import load_oracle
from minigen.models.unet import UNet
from minigen.results import run_record

GUIDANCE = 2.0
# issue 10's targets, each as (column, bound, "min" or "max")
TARGETS = [
    ("valid %", 80.0, "min"),
    ("FD", 1.5, "max"),
    ("shape %", 95.0, "min"),
    ("colour %", 95.0, "min"),
]
MAX_VALID_SPREAD = 5.0  # points, across seeds


def train(args, world: ShapesWorld, schedule, precision, seed: int, judge, real):
    """The EMA model, the training seconds and the curve; with --judge-every, the EMA model is
    judged on --curve-samples samples every that many steps (not timed): the curve."""
    curve = []

    def judge_now(done: int, ema_model) -> None:
        if args.judge_every and done % args.judge_every == 0:
            n = args.curve_samples
            row = judge_model(args, ema_model, schedule, precision, judge, real, n)
            curve.append({"step": done} | row)
            print(
                f"    step {done:5d}: valid {row['valid %']:5.1f}%  FD {row['FD']:6.2f}"
                f"  shape {row['shape %']:5.1f}%  colour {row['colour %']:5.1f}%",
                flush=True,
            )

    torch.manual_seed(seed)
    model = UNet(
        base_channels=args.base,
        class_counts=(len(world.shapes), len(world.colours)),
    )
    ema, history = diffusion.train_diffusion(
        model, schedule, harness.scene_batches(world, args.batch), steps=args.steps,
        objective=args.objective, lr=args.lr, warmup_steps=args.warmup,
        min_snr_gamma=args.min_snr, cond_dropout=args.cond_dropout,
        ema_decay=args.ema_decay, ema_warmup=args.ema_warmup,
        precision=precision, seed=seed,
        progress=False, on_step=judge_now,
    )  # fmt: skip
    return ema, history.seconds, curve


def judge_model(args, model, schedule, precision, judge, real, n) -> dict:
    scores = harness.model_quality(
        model, schedule, judge, real[:n], objective=args.objective,
        guidance=GUIDANCE, steps=args.sample_steps, eta=args.eta, seed=0,
        precision=precision,
    )  # fmt: skip
    low, high = scores["valid_interval"]
    fd_low, fd_high = scores["fd_interval"]
    return {
        "valid %": 100 * scores["valid"],
        "valid 95% CI": f"{100 * low:.0f}-{100 * high:.0f}",
        "FD": scores["fd"],
        "FD 95% CI": f"{fd_low:.1f}-{fd_high:.1f}",
        "TV s/c/z/cell": "/".join(f"{100 * v:.0f}" for v in scores["tv"].values()),
        "shape %": 100 * scores["guided"]["shape"],
        "colour %": 100 * scores["guided"]["colour"],
    }


def other_etas(args, model, schedule, precision, judge, real) -> dict:
    """Unconditional scores of the final model at each --also-eta, on the same noise."""
    scored = {}
    for eta in args.also_eta:
        options = diffusion.SamplerOptions(objective=args.objective)
        draw = dict(steps=args.sample_steps, eta=eta, seed=0, precision=precision)
        images, _ = harness.sample_images(
            model, schedule, len(real), options, **draw
        )
        scores = harness.score_images(judge, images, real)
        (low, high), (fd_low, fd_high) = (
            scores["valid_interval"],
            scores["fd_interval"],
        )
        scored[f"eta {eta:g}"] = {
            "valid %": 100 * scores["valid"],
            "valid 95% CI": f"{100 * low:.0f}-{100 * high:.0f}",
            "FD": scores["fd"],
            "FD 95% CI": f"{fd_low:.1f}-{fd_high:.1f}",
        }
        print(f"    at eta {eta:g}: {scored[f'eta {eta:g}']}", flush=True)
    return scored


def guidance_scales(args, model, schedule, precision, judge, world) -> dict:
    """Chapter 5's guidance table for the final model: % shape, colour right, valid."""
    requests = harness.label_requests(world, args.guided_samples)  # (N, 2)
    scored = {}
    for w in args.guidance_scales:
        options = diffusion.SamplerOptions(
            objective=args.objective, cond=requests, guidance=w
        )
        images, _ = harness.sample_images(
            model, schedule, len(requests), options, steps=args.guided_steps,
            seed=2, precision=precision,
        )  # fmt: skip
        scores = harness.request_scores(judge, images, requests)
        scored[f"w {w:g}"] = {
            f"{key} %": 100 * scores[key] for key in ("shape", "colour", "valid")
        }
        print(f"    at w = {w:g}: {scored[f'w {w:g}']}", flush=True)
    return scored


def summary_line(name: str, rows: list[dict], column: str) -> str:
    values = [row[column] for row in rows]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (
        f"  {name:>5} {column:>9}: {statistics.mean(values):8.2f} ± {spread:6.2f}"
        f"   range {min(values):.2f} .. {max(values):.2f}"
    )


def verdicts(rows: list[dict]) -> list[str]:
    """Which targets every seed meets."""
    lines = []
    for column, bound, kind in TARGETS:
        values = [row[column] for row in rows]
        worst = min(values) if kind == "min" else max(values)
        met = worst >= bound if kind == "min" else worst <= bound
        sign = ">=" if kind == "min" else "<="
        lines.append(
            f"  {column} {sign} {bound:g} for every seed: "
            f"{'met' if met else 'MISSED'} (worst {worst:.2f})"
        )
    valid = [row["valid %"] for row in rows]
    spread = max(valid) - min(valid)
    met = spread <= MAX_VALID_SPREAD
    lines.append(
        f"  valid % range across seeds <= {MAX_VALID_SPREAD:g} points: "
        f"{'met' if met else 'MISSED'} ({spread:.1f})"
    )
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"]
    )
    parser.add_argument("--steps", type=int, default=2500, help="training steps")
    parser.add_argument("--base", type=int, default=16, help="U-Net base channels")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=0, help="lr warm-up steps")
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--ema-warmup", action="store_true")
    parser.add_argument("--cond-dropout", type=float, default=0.2)
    parser.add_argument("--min-snr", type=float, default=None, help="gamma")
    parser.add_argument("--objective", default="v", choices=diffusion.OBJECTIVES)
    parser.add_argument("--samples", type=int, default=500, help="per score")
    parser.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    parser.add_argument(
        "--eta", type=float, default=0.0, help="DDIM eta (1: DDPM-like)"
    )
    parser.add_argument(
        "--also-eta",
        type=float,
        nargs="*",
        default=[],
        help="score unconditional samples of the final model at these etas too",
    )
    parser.add_argument(
        "--guidance-scales",
        type=float,
        nargs="*",
        default=[],
        help="score guided samples of the final model at these scales w",
    )
    parser.add_argument("--guided-samples", type=int, default=300, help="per w")
    parser.add_argument("--guided-steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument(
        "--save-models",
        type=Path,
        help="a folder for the EMA weights, DTYPE-SEED.pt",
    )
    parser.add_argument(
        "--judge-every", type=int, default=0, help="steps between curve points"
    )
    parser.add_argument(
        "--curve-samples", type=int, default=250, help="samples per curve point"
    )
    parser.add_argument(
        "--oracle-steps", type=int, default=1500, help="the judge (cpu profile)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    world = ShapesWorld(max_objects=1)
    schedule = diffusion.NoiseSchedule.cosine()
    judge = load_oracle(ShapesWorld(), steps=args.oracle_steps)
    n = args.samples
    real = world.scenes(range(n), split="test").images
    other = world.scenes(range(n, 2 * n), split="test").images
    floor = metrics.frechet_oracle_distance(judge, real, other)
    print(
        f"{torch.get_num_threads()} threads; bf16 instructions: "
        f"{cpu_supports_bf16()}; recipe: {vars(args)}"
    )
    print(f"FD floor (real vs other real scenes, {n} each): {floor:.2f}")
    columns = ["valid %", "valid 95% CI", "FD", "FD 95% CI", "TV s/c/z/cell"]
    columns += ["shape %", "colour %", "train s"]
    print(f"{'dtype':>5} {'seed':>4} " + " ".join(f"{c:>12}" for c in columns))
    results: dict[str, list[dict]] = {}
    runs: list[dict] = []
    for dtype in args.dtypes:
        precision = choose_precision("cpu", dtype)
        for seed in args.seeds:
            started = time.perf_counter()
            model, seconds, curve = train(
                args, world, schedule, precision, seed, judge, real
            )
            row = judge_model(args, model, schedule, precision, judge, real, n)
            row["train s"] = seconds
            row["also"] = other_etas(args, model, schedule, precision, judge, real)
            row["guidance"] = guidance_scales(
                args, model, schedule, precision, judge, world
            )
            if args.save_models:
                args.save_models.mkdir(parents=True, exist_ok=True)
                torch.save(
                    model.state_dict(), args.save_models / f"{dtype}-{seed}.pt"
                )
            results.setdefault(dtype, []).append(row)
            runs.append({"dtype": dtype, "seed": seed} | row | {"curve": curve})
            cells = [
                f"{row[c]:>12}" if isinstance(row[c], str) else f"{row[c]:12.2f}"
                for c in columns
            ]
            print(
                f"{dtype:>5} {seed:4d} " + " ".join(cells)
                + f"   ({time.perf_counter() - started:.0f} s with scoring)",
                flush=True,
            )  # fmt: skip
    for dtype, rows in results.items():
        print(f"\n{dtype}: mean ± standard deviation over seeds {args.seeds}")
        for column in ["valid %", "FD", "shape %", "colour %", "train s"]:
            print(summary_line(dtype, rows, column))
        print("\n".join(verdicts(rows)))
    if args.json:
        record = run_record(args) | {
            "fd floor": floor,
            "runs": runs,
        }
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
