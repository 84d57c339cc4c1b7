"""Stable Diffusion in miniature on the shapes world: text -> image judged by the
chapter-1 oracle per text mode and training seed, the guidance sweep, and the cost
of latent against pixel diffusion.

Run: MINIGEN_PROFILE=cpu .venv/bin/python benchmarks/latent_diffusion.py
         [--seeds 0 1 2] [--prompts 200] [--guidance 3] [--json FILE]

For each seed and text mode ("frozen": chapter 6's CLIP text encoder; "joint":
a fresh one trained with the U-Net), `latent.load_latent_diffusion` (trained if
not cached). Then print:
- one-object test prompts: the oracle's accuracy per attribute and all four right,
  in English and Chinese, and on prompts of the held-out (colour, shape) pairs;
- two-object prompts: both objects right, binding errors (colours swapped, among
  prompts with two colours and two shapes), relation right;
- training seconds (History) and seconds per generated image;
then, for seed 0 and the frozen encoder, all four right and the Fréchet oracle
distance to real test scenes per guidance scale; and the cost per training image
and per sampled image of the latent U-Net against chapter 5's pixel U-Net, timed
in this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from minigen.core.profiles import pick
from minigen.core.runtime import cpu_name, cpu_supports_bf16
from minigen.data.shapes import ShapesWorld
from minigen.eval import prompts
from minigen.eval.metrics import frechet_oracle_distance
from minigen.models import clip
from minigen.models.oracle import load_oracle
from minigen.pipelines import latent

GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0, 7.5)


def score(chain, judge, world, labels, language="en", guidance=None, seed=0):
    """The oracle's hits for the prompts of `labels` and the images."""

    def generate(texts):
        return chain.generate(texts, guidance=guidance, seed=seed)

    return prompts.score_prompts(generate, judge, world, labels, language)


def percent(hits) -> float:
    return 100 * hits.float().mean().item()


def one_run(seed: int, text: str, args, judge) -> dict:
    recipe = latent.book_latent_recipe(text, seed)
    chain = latent.load_latent_diffusion(recipe)
    chain.guidance = args.guidance
    world = clip.book_world()
    row = {"seed": seed, "text": text, "train s": chain.model.history.seconds}
    one = prompts.prompt_labels(world, args.prompts, 1)
    start = time.perf_counter()
    hits, _ = score(chain, judge, world, one, seed=seed)
    row["s per image"] = (time.perf_counter() - start) / args.prompts
    row |= {f"en {k} %": percent(v) for k, v in hits.items()}
    hits, _ = score(chain, judge, world, one, "zh", seed=seed)
    row["zh all %"] = percent(hits["all"])
    held_out = prompts.prompt_labels(world, args.prompts, 1, "holdout")
    hits, _ = score(chain, judge, world, held_out, seed=seed)
    row["held-out all %"] = percent(hits["all"])
    two = prompts.prompt_labels(world, args.prompts, 2)
    hits, _ = score(chain, judge, world, two, seed=seed)
    row |= {f"two {k} %": percent(v) for k, v in hits.items()}
    print(json.dumps(row, indent=None))
    return row


def guidance_sweep(args, judge) -> list[dict]:
    chain = latent.load_latent_diffusion(latent.book_latent_recipe("frozen", 0))
    world = clip.book_world()
    labels = prompts.prompt_labels(world, args.prompts, 1)
    real = world.scenes(prompts.prompt_indices(world, args.prompts, 1), "test")
    rows = []
    for scale in GUIDANCE_SCALES:
        hits, images = score(chain, judge, world, labels, guidance=scale)
        fd = frechet_oracle_distance(judge, real.images, images)
        rows.append({"guidance": scale, "all %": percent(hits["all"]), "FD": fd})
        print(json.dumps(rows[-1]))
    return rows


def summary(runs: list[dict]) -> dict:
    """mean and standard deviation over seeds of every figure, per text mode."""
    table = {}
    for text in latent.TEXT_MODES:
        rows = [row for row in runs if row["text"] == text]
        if not rows:
            continue
        table[text] = {
            key: (
                statistics.mean(row[key] for row in rows),
                statistics.pstdev(row[key] for row in rows),
            )
            for key in rows[0]
            if key not in ("seed", "text")
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--prompts", type=int, default=pick(smoke=8, cpu=200, gpu=500)
    )
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    judge = load_oracle(ShapesWorld(), steps=pick(smoke=20, cpu=1500, gpu=4000))
    runs = [
        one_run(seed, text, args, judge)
        for seed in args.seeds
        for text in latent.TEXT_MODES
    ]
    table = summary(runs)
    for text, figures in table.items():
        print(f"\n{text} text encoder, mean ± sd over seeds {args.seeds}:")
        for key, (mean, sd) in figures.items():
            print(f"  {key:24} {mean:8.2f} ± {sd:.2f}")
    sweep = guidance_sweep(args, judge)
    cost = latent.cost_table(latent.load_latent_diffusion())
    for name, value in cost.items():
        print(f"{name:40} {value:10.3f}")
    if args.json:
        result = {
            "command": "benchmarks/latent_diffusion.py "
            + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "json"),
            "cpu": cpu_name(),
            "bf16 instructions": cpu_supports_bf16(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "recipe": dataclasses.asdict(latent.book_latent_recipe()),
            "runs": runs,
            "summary": table,
            "guidance sweep": sweep,
            "cost": cost,
        }
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
