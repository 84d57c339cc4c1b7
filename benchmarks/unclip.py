"""DALL·E 2 (unCLIP) on the shapes world: each link of text -> image embedding ->
image measured, per prior and training seed.

Run: MINIGEN_PROFILE=cpu .venv/bin/python benchmarks/unclip.py [--seeds 0 1 2]
         [--prompts 200] [--guidance 3] [--steps 25] [--json FILE]

For each seed: chapter 6's CLIP (cached) and `unclip.load_unclip` with the
profile's recipe and that seed (decoder and priors trained if not cached). Then
print:
- the priors: mean cos(predicted, true image embedding) and cos(predicted, the
  image embedding of an unrelated scene) on test captions of both languages,
  beside cos(text, image), the no-prior baseline;
- the decoder alone: test scenes embedded by CLIP and decoded, read by the
  chapter-1 oracle against the source (shape, colour, size, cell, all four);
- text -> image, one-object test prompts: the oracle's accuracy per attribute and
  all four right, per prior in English, the diffusion prior in Chinese, and on
  prompts of the held-out (colour, shape) pairs;
- two-object prompts (diffusion prior): both objects right, colours swapped
  between them (binding errors, among prompts with two colours and two shapes),
  their relation right;
- seconds per generated image (prior with 2 candidates + decoder).
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
from minigen.models import clip
from minigen.models.oracle import load_oracle
from minigen.pipelines import unclip


def one_seed(seed: int, args: argparse.Namespace, judge) -> dict:
    recipe = dataclasses.replace(unclip.book_unclip_recipe(), seed=seed)
    start = time.perf_counter()
    model = unclip.load_unclip(recipe)
    row = {"seed": seed, "load s": time.perf_counter() - start}
    row["train s"] = sum(
        getattr(model, name).history.seconds for name in unclip.MODELS
    )
    world = clip.book_world()
    pairs = unclip.embed_scenes(
        model.clip, model.tokenizer, world, range(args.pairs), "test"
    )
    row["cos text-image"] = (pairs.text * pairs.image).sum(-1).mean().item()
    for prior in unclip.PRIORS:
        cos = unclip.prior_similarities(model, pairs, prior, seed=seed)
        row[f"cos {prior}"], row[f"cos rolled {prior}"] = cos["true"], cos["rolled"]

    single = ShapesWorld(max_objects=1, holdout=clip.HOLDOUT)
    source = single.scenes(prompts.prompt_indices(single, args.prompts, 1), "test")
    with torch.no_grad():
        embeddings = model.clip.encode_image(source.images)
    decoded = model.decode(embeddings, args.guidance, args.steps, seed=seed)
    hits = prompts.prompt_hits(judge, decoded, source)
    row |= {f"decoder {k}": 100 * v.float().mean().item() for k, v in hits.items()}

    def generator(prior):
        return lambda texts: model.generate(
            texts, prior, args.guidance, args.steps, seed
        )

    runs = [(prior, "en", "test") for prior in unclip.PRIORS]
    runs += [("diffusion", "zh", "test"), ("diffusion", "en", "holdout")]
    for prior, language, split in runs:
        labels = prompts.prompt_labels(single, args.prompts, 1, split)
        started = time.perf_counter()
        hits, _ = prompts.score_prompts(
            generator(prior), judge, single, labels, language
        )
        if (prior, language, split) == ("diffusion", "en", "test"):
            row["s per image"] = (time.perf_counter() - started) / args.prompts
        name = f"{prior} {language}" + (" held-out" if split == "holdout" else "")
        row |= {
            f"{name} {k}": 100 * v.float().mean().item() for k, v in hits.items()
        }

    pair_world = ShapesWorld(max_objects=2, holdout=clip.HOLDOUT)
    labels = prompts.prompt_labels(pair_world, args.prompts, objects=2)
    hits, _ = prompts.score_prompts(
        generator("diffusion"), judge, pair_world, labels
    )
    eligible = (labels.shape[:, 0] != labels.shape[:, 1]) & (
        labels.colour[:, 0] != labels.colour[:, 1]
    )
    row["two both"] = 100 * hits["both"].float().mean().item()
    row["two binding errors"] = (
        100 * hits["binding_error"][eligible].float().mean().item()
    )
    row["two relation"] = 100 * hits["relation"].float().mean().item()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    judge = load_oracle(ShapesWorld(), steps=pick(smoke=20, cpu=1500, gpu=4000))
    rows = [one_seed(seed, args, judge) for seed in args.seeds]
    print(
        f"{cpu_name()}, bf16 instructions: {cpu_supports_bf16()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name in rows[0]:
        values = [row[name] for row in rows]
        spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
        print(f"{name:32} {statistics.mean(values):8.3f}{spread}   {values}")
    if args.json:
        record = {
            "command": "benchmarks/unclip.py " + " ".join(
                f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
                for k, v in vars(args).items() if k != "json" and v is not None
            ),
            "cpu": cpu_name(), "bf16 instructions": cpu_supports_bf16(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "recipe": dataclasses.asdict(unclip.book_unclip_recipe()), "runs": rows,
        }  # fmt: skip
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
