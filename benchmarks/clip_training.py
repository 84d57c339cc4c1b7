"""CLIP on the shapes world: training speed, zero-shot accuracy on held-out (colour,
shape) pairs in English and Chinese, retrieval and binding, per image encoder and
precision.

Run: .venv/bin/python benchmarks/clip_training.py [--encoders vit resnet]
         [--dtypes fp32 bf16] [--steps 1500] [--batch 64] [--seeds 0]
         [--negatives] [--vocabulary 1000] [--text-layers 2] [--speed-only]
         [--json FILE]

For each encoder, precision and seed: train a small CLIP (`clip.make_clip`: a text
transformer and a ViT or a ModifiedResNet, 128-dimensional embeddings, the chapter's
recipe with the settings given here) on captioned scenes of one or two
objects, every caption in English or Chinese and in a drawn phrasing, with the
(colour, shape) pairs of HOLDOUT never shown; with --negatives also against each
scene's hard negative (NegCLIP). Then print:
- training images/s (wall time of the training loop);
- zero-shot accuracy of shape, colour, size and cell on one-object scenes of the
  held-out pairs, with all prompts of a class averaged and with a single prompt, in
  both languages (chance: 1 / the number of classes), and on test scenes of pairs
  seen in training ("seen pairs");
- retrieval on 1,000 two-object test pairs, image -> text and text -> image: R@1,
  R@5, median rank (a caption counts when it is true of the image; chance R@1 is
  about the share of true captions);
- binding: the share of two-object test scenes closer to their caption than to its
  negative with swapped colours, or swapped places (same words; chance 50%).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from minigen.core.runtime import choose_precision, cpu_name, cpu_supports_bf16
from minigen.data import captions
from minigen.data.shapes import ShapesWorld
from minigen.eval import zero_shot
from minigen.models import clip

HOLDOUT = clip.HOLDOUT
CONTEXT = clip.CAPTION_CONTEXT


def evaluate(model, tokenizer) -> dict[str, float]:
    model.eval()
    single_world = ShapesWorld(max_objects=1, holdout=HOLDOUT)
    held_out = single_world.scenes(500, split="holdout")
    seen = single_world.scenes(500, split="test")  # pairs seen in training
    row = {}
    for language in captions.LANGUAGES:
        for attribute in zero_shot.ATTRIBUTES:
            for single in (False, True):
                name = f"{attribute} {language}{' single' if single else ''}"
                row[name] = 100 * zero_shot.zero_shot_accuracy(
                    model, tokenizer, held_out, attribute, language, single, CONTEXT
                )
            row[f"{attribute} {language} seen pairs"] = 100 * (
                zero_shot.zero_shot_accuracy(
                    model, tokenizer, seen, attribute, language, False, CONTEXT
                )
            )
    pairs_world = ShapesWorld(min_objects=2, max_objects=2, holdout=HOLDOUT)
    pairs = pairs_world.scenes(500, split="test")
    for language in captions.LANGUAGES:
        for kind in ("swap_colours", "swap_places"):
            share, _ = zero_shot.binding_accuracy(
                model, tokenizer, pairs, kind, language, CONTEXT
            )
            row[f"binding {kind} {language}"] = 100 * share
    test_pairs = pairs_world.scenes(1000, split="test")
    row |= {
        k: 100 * v if "median" not in k else v
        for k, v in zero_shot.retrieval_scores(model, tokenizer, test_pairs).items()
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--encoders",
        nargs="+",
        choices=["vit", "resnet"],
        default=["vit", "resnet"],
    )
    parser.add_argument(
        "--dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--negatives", action="store_true", help="NegCLIP hard negatives"
    )
    parser.add_argument("--vocabulary", type=int, default=1000)
    parser.add_argument("--text-layers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--speed-only", action="store_true", help="skip the scoring"
    )
    args = parser.parse_args()
    world = ShapesWorld(max_objects=2, holdout=HOLDOUT)
    print(
        f"{torch.get_num_threads()} threads; bf16 instructions: {cpu_supports_bf16()}; {vars(args)}"
    )
    negatives = ("swap_colours", "swap_places") if args.negatives else ()
    runs = []
    for kind in args.encoders:
        for dtype in args.dtypes:
            for seed in args.seeds:
                recipe = clip.CLIPRecipe(
                    encoder=kind,
                    steps=args.steps,
                    batch_size=args.batch,
                    lr=args.lr,
                    warmup_steps=min(100, args.steps // 10),
                    negatives=negatives,
                    vocabulary_size=args.vocabulary,
                    text_layers=args.text_layers,
                    seed=seed,
                )
                precision = choose_precision("cpu", dtype)
                started = time.perf_counter()
                model, tokenizer, history = clip.make_clip(
                    world, recipe, precision, progress=False
                )
                images_per_s = args.steps * args.batch / history.seconds
                row = {}
                if not args.speed_only:
                    with precision.autocast():
                        row = evaluate(model, tokenizer)
                row |= {
                    "images/s": images_per_s,
                    "final loss": history.losses[-1],
                    "scale": history.metrics["scale"][-1],
                }
                runs.append({"encoder": kind, "dtype": dtype, "seed": seed} | row)
                print(
                    f"\n{kind} {dtype} seed {seed} ({time.perf_counter() - started:.0f} s with scoring)",
                    flush=True,
                )
                for name, value in row.items():
                    print(f"  {name:28} {value:8.2f}", flush=True)
    if args.json:
        record = {"command": " ".join(["benchmarks/clip_training.py", *sys.argv[1:]]), "cpu": cpu_name(), "bf16 instructions": cpu_supports_bf16(),
                  "torch": torch.__version__, "threads": torch.get_num_threads(), "recipe": vars(args) | {"json": str(args.json)},
                  "runs": runs}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
