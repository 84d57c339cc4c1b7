"""CLIP on the shapes world: training speed, zero-shot accuracy on held-out (colour,
shape) pairs in English and Chinese, retrieval and binding, per image encoder and
precision.

Run: .venv/bin/python benchmarks/clip_training.py [--encoders vit resnet]
         [--dtypes fp32 bf16] [--steps 1500] [--batch 64] [--seeds 0]
         [--negatives] [--vocabulary 1000] [--speed-only] [--json FILE]

For each encoder, precision and seed: train a small CLIP (text transformer and a ViT
or a ModifiedResNet, 128-dimensional embeddings) on captioned scenes of one or two
objects, every caption in English or Chinese and in a drawn phrasing, with the
(colour, shape) pairs of HOLDOUT never shown; with --negatives also against each
scene's hard negative (NegCLIP). Then print:
- training images/s (wall time of the training loop);
- zero-shot accuracy of shape, colour, size and cell on one-object scenes of the
  held-out pairs, with all prompts of a class averaged and with a single prompt, in
  both languages (chance: 1 / the number of classes);
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
from minigen.tokenizers.bpe import BPETokenizer

HOLDOUT = (("yellow", "triangle"), ("cyan", "cross"), ("magenta", "circle"))
CONTEXT = 40  # the longest two-object caption (Chinese) takes 33 tokens
EMBED = 128


def build(kind: str, vocabulary: int, seed: int) -> clip.CLIP:
    torch.manual_seed(seed)
    text = clip.TextEncoder(vocabulary, CONTEXT, 128, 4, 4, EMBED)
    if kind == "vit":
        image = clip.VisionTransformer(32, 4, 128, 4, 4, EMBED)
    else:
        image = clip.ResNetEncoder(32, 16, (1, 1, 1), 4, EMBED)
    return clip.CLIP(image, text)


def tokenizer_for(world: ShapesWorld, size: int) -> BPETokenizer:
    labels, draws = world.sample_labels(5000), world.phrasing_draws(5000)
    corpus = [
        text
        for language in captions.LANGUAGES
        for text in captions.captions(world, labels, language, draws)
    ]
    return BPETokenizer.train(corpus, size)


@torch.no_grad()
def retrieval(model, tokenizer, world: ShapesWorld) -> dict[str, float]:
    scenes = world.scenes(1000, split="test")
    texts = captions.captions(world, scenes, "en")
    meanings = captions.caption_meanings(world, scenes, "en")
    held = [
        captions.meanings_held(o, world.grid)
        for o in captions.scene_objects(scenes, world)
    ]
    relevant = torch.tensor(
        [[m in h for m in meanings] for h in held]
    )  # (images, texts)
    images = model.encode_image(scenes.images).float()
    text = torch.cat(
        [
            model.encode_text(tokenizer(texts[i : i + 250], CONTEXT)).float()
            for i in range(0, 1000, 250)
        ]
    )
    similarity = images @ text.T
    found = {}
    for name, sim, rel in (
        ("i->t", similarity, relevant),
        ("t->i", similarity.T, relevant.T),
    ):
        scores = zero_shot.recall_at(zero_shot.retrieval_ranks(sim, rel), (1, 5))
        found |= {f"{name} {k}": v for k, v in scores.items()}
    found["chance R@1"] = relevant.float().mean().item()
    return found


def evaluate(model, tokenizer) -> dict[str, float]:
    model.eval()
    single_world = ShapesWorld(max_objects=1, holdout=HOLDOUT)
    held_out = single_world.scenes(500, split="holdout")
    row = {}
    for language in captions.LANGUAGES:
        for attribute in zero_shot.ATTRIBUTES:
            for single in (False, True):
                name = f"{attribute} {language}{' single' if single else ''}"
                row[name] = 100 * zero_shot.zero_shot_accuracy(
                    model, tokenizer, held_out, attribute, language, single, CONTEXT
                )
    pairs_world = ShapesWorld(min_objects=2, max_objects=2, holdout=HOLDOUT)
    pairs = pairs_world.scenes(500, split="test")
    for language in captions.LANGUAGES:
        for kind in ("swap_colours", "swap_places"):
            share, _ = zero_shot.binding_accuracy(
                model, tokenizer, pairs, kind, language, CONTEXT
            )
            row[f"binding {kind} {language}"] = 100 * share
    row |= {
        k: 100 * v if "median" not in k else v
        for k, v in retrieval(model, tokenizer, pairs_world).items()
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
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--speed-only", action="store_true", help="skip the scoring"
    )
    args = parser.parse_args()
    world = ShapesWorld(max_objects=2, holdout=HOLDOUT)
    tokenizer = tokenizer_for(world, args.vocabulary)
    print(
        f"{torch.get_num_threads()} threads; bf16 instructions: {cpu_supports_bf16()}; {vars(args)}"
    )
    print(f"tokenizer: {len(tokenizer)} tokens")
    negatives = ("swap_colours", "swap_places") if args.negatives else ()
    batches = clip.caption_batches(
        world, tokenizer, args.batch, negatives=negatives, context_length=CONTEXT
    )
    runs = []
    for kind in args.encoders:
        for dtype in args.dtypes:
            for seed in args.seeds:
                model = build(kind, len(tokenizer), seed)
                precision = choose_precision("cpu", dtype)
                started = time.perf_counter()
                history = clip.train_clip(
                    model,
                    batches,
                    args.steps,
                    lr=args.lr,
                    warmup_steps=min(100, args.steps // 10),
                    precision=precision,
                    progress=False,
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
