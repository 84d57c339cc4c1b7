"""Sampling and scoring diffusion models of the shapes world, for the chapters'
notebooks and benchmarks alike.

- Training batches of single-object scenes with their (shape, colour) labels, in the
  model's range [-1, 1].
- Batched, optionally guided sampling with one random stream (DDIM or DDPM, see
  `minigen.diffusion.sampling`), timed per image, returned in [0, 1].
- Scores read by the chapter-1 oracle: the Frechet oracle distance to real scenes
  (the FID of M. Heusel et al., "GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium", NeurIPS 2017, with the oracle as the
  feature network), the share of valid scenes, and for conditional samples how
  often the requested shape and colour are read back, and how varied the samples
  of one request are.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from typing import Callable

import torch
from torch import Tensor, nn

from minigen.core.runtime import Precision
from minigen.core.validators import (
    check_choice,
    check_instance,
    check_int,
    check_module,
    check_optional,
    check_tensor,
)
from minigen.data.shapes import SPLITS, Scenes, ShapesWorld
from minigen.diffusion.objectives import check_condition
from minigen.diffusion.sampling import SamplerOptions, ddim_sample, ddpm_sample
from minigen.diffusion.schedule import NoiseSchedule
from minigen.eval.metrics import (
    frechet_distance_of,
    frechet_interval,
    oracle_features,
    total_variation,
    wilson_interval,
)
from minigen.models.oracle import (
    Oracle,
    attribute_frequencies,
    first_object,
    parse,
)

SAMPLERS: tuple[str, ...] = ("ddim", "ddpm")


def to_model_range(images: Tensor) -> Tensor:
    """Images in [0, 1] -> x = 2 images - 1 in [-1, 1], the range diffusion models
    use."""
    check_tensor("images", images, floating=True)
    return images * 2 - 1


def to_unit_range(x: Tensor) -> Tensor:
    """Samples x in [-1, 1] -> (x + 1) / 2, clamped to [0, 1], float32: images to
    show."""
    check_tensor("x", x, floating=True)
    return ((x.float() + 1) / 2).clamp(0, 1)


def first_object_labels(scenes: Scenes) -> Tensor:
    """(N, 2) long: the shape and colour of each scene's first object (the class
    labels of a single-object scene)."""
    check_instance("scenes", scenes, Scenes)
    return torch.stack([scenes.shape[:, 0], scenes.colour[:, 0]], dim=1)  # (N, 2)


def scene_batches(
    world: ShapesWorld, batch_size: int = 32, split: str = "train"
) -> Callable[[int], tuple[Tensor, Tensor]]:
    """batches(step) for `train_diffusion`: scenes step * B .. (step + 1) * B - 1 of
    `split` in [-1, 1] (B, 3, S, S), with their first object's (shape, colour) (B,
    2)."""
    check_instance("world", world, ShapesWorld)
    batch_size = check_int("batch_size", batch_size)
    check_choice("split", split, SPLITS)

    def batch(step: int) -> tuple[Tensor, Tensor]:
        step = check_int("step", step, minimum=0)
        scenes = world.scenes(
            range(step * batch_size, (step + 1) * batch_size), split
        )
        return to_model_range(scenes.images), first_object_labels(scenes)

    return batch


def label_requests(world: ShapesWorld, n: int) -> Tensor:
    """(n, 2) (shape, colour) requests: every pair in turn, the shape changing
    fastest."""
    check_instance("world", world, ShapesWorld)
    index = torch.arange(check_int("n", n))
    shapes, colours = len(world.shapes), len(world.colours)
    return torch.stack([index % shapes, index // shapes % colours], dim=1)  # (n, 2)


def sample_images(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    options: SamplerOptions = SamplerOptions(),
    *,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    batch_size: int = 250,
    seed: int = 0,
    precision: Precision | None = None,
) -> tuple[Tensor, float]:
    """n samples in [0, 1] (n, C, S, S) on the CPU, and the seconds per image.

    Batches of at most `batch_size` share one generator seeded with `seed`; the rows
    of options.cond (one per sample) follow their batch. sampler: "ddim" (`steps`
    steps, `eta`) or "ddpm" (every step). The model (on its device) must have
    `in_channels` and `image_size`, as the UNet does; precision: autocast with it.
    """
    _check_sampling_args(
        model, schedule, n, options, sampler, batch_size, precision
    )
    generator = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    autocast = precision.autocast if precision else contextlib.nullcontext
    chunks, start = [], time.perf_counter()
    for first in range(0, n, batch_size):
        size = min(batch_size, n - first)
        cond = None if options.cond is None else options.cond[first : first + size]
        batch = replace(options, cond=cond)  # the conditions of this batch
        with autocast():
            x = _sample(
                model, schedule, size, batch, sampler, steps, eta, generator
            )
        chunks.append(to_unit_range(x).cpu())
    return torch.cat(chunks), (time.perf_counter() - start) / n


def _sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    size: int,
    options: SamplerOptions,
    sampler: str,
    steps: int,
    eta: float,
    generator: torch.Generator,
) -> Tensor:
    device = next(model.parameters()).device
    shape = (size, model.in_channels, model.image_size, model.image_size)
    randomness = {"generator": generator, "device": device}
    if sampler == "ddpm":
        return ddpm_sample(model, schedule, shape, options, **randomness)
    return ddim_sample(model, schedule, shape, steps, eta, options, **randomness)


def score_images(
    judge: Oracle, images: Tensor, reference: Tensor
) -> dict[str, float | tuple[float, float]]:
    """How the oracle reads images in [0, 1]: "fd", the Frechet oracle distance to
    the reference images, and "fd_interval", its 95% bootstrap interval; "valid",
    the share it reads as valid scenes, and "valid_interval", its 95% Wilson
    interval; "objects", the mean number of objects it reads; "tv", the total
    variation distance between the objects' attributes read in images and in the
    reference: {"shape", "colour", "size", "cell"} (the cell: where objects are)."""
    check_instance("judge", judge, Oracle)
    check_tensor("images", images, dims=4, floating=True, shape="(N, 3, S, S)")
    parsed = parse(judge, images)
    frequencies = [
        _attribute_frequencies(cells, judge.world)
        for cells in (parsed, parse(judge, reference))
    ]
    features = oracle_features(judge, images)
    reference_features = oracle_features(judge, reference)
    valid = int(parsed["valid"].sum())
    return {
        "fd": frechet_distance_of(reference_features, features),
        "fd_interval": frechet_interval(reference_features, features),
        "valid": valid / len(images),
        "valid_interval": wilson_interval(valid, len(images)),
        "objects": parsed["count"].float().mean().item(),
        "tv": {
            name: total_variation(*(f[name] for f in frequencies))
            for name in frequencies[0]
        },
    }


def _attribute_frequencies(
    cells: dict[str, Tensor], world: ShapesWorld
) -> dict[str, Tensor]:
    """The shares of objects read with each shape, colour, size and in each cell."""
    occupied = (cells["shape"] != len(world.shapes)).double()  # (N, G*G)
    where = occupied.sum(0) / occupied.sum().clamp(min=1)
    return attribute_frequencies(cells, world) | {"cell": where}


def request_scores(
    judge: Oracle, images: Tensor, requests: Tensor
) -> dict[str, float]:
    """How well conditional samples in [0, 1] meet their (shape, colour) requests
    (N, 2): "shape" and "colour", the share whose first object read has the
    requested attribute (an image without an object never does); "valid", the share
    of valid scenes; each of the three with its 95% Wilson interval
    ("shape_interval", ...); "spread", the variance of the oracle features within a
    request, summed over the features and averaged over the requests with two
    samples or more (0: every sample of a request the same; NaN: no request has
    two samples)."""
    check_instance("judge", judge, Oracle)
    check_tensor("images", images, dims=4, floating=True, shape="(N, 3, S, S)")
    check_tensor("requests", requests, dims=2, shape="(N, 2) of (shape, colour)")
    if requests.shape != (len(images), 2):
        raise ValueError(
            f"requests must be ({len(images)}, 2), one (shape, colour) per image, "
            f"got {tuple(requests.shape)}"
        )
    read = parse(judge, images)
    first = first_object(read, judge.world)  # -1 where no object was read
    features = oracle_features(judge, images)  # (N, F)
    groups = [(requests == pair).all(dim=1) for pair in requests.unique(dim=0)]
    repeated = [
        rows for rows in groups if rows.sum() > 1
    ]  # requests with 2+ samples
    spreads = [features[rows].var(dim=0).sum() for rows in repeated]
    hits = {
        "shape": first["shape"] == requests[:, 0],
        "colour": first["colour"] == requests[:, 1],
        "valid": read["valid"],
    }
    shares = {name: hit.float().mean().item() for name, hit in hits.items()}
    intervals = {
        f"{name}_interval": wilson_interval(int(hit.sum()), len(images))
        for name, hit in hits.items()
    }
    spread = torch.stack(spreads).mean().item() if spreads else math.nan
    return shares | intervals | {"spread": spread}


def model_quality(
    model: nn.Module,
    schedule: NoiseSchedule,
    judge: Oracle,
    real: Tensor,
    *,
    objective: str = "v",
    guidance: float = 2.0,
    steps: int = 50,
    eta: float = 0.0,
    seed: int = 0,
    precision: Precision | None = None,
) -> dict:
    """The oracle's verdict on a class-conditional model of single-object scenes, on
    as many samples of each kind as there are real images (N, 3, S, S) in [0, 1]:
    unconditional samples scored against `real` (the keys of `score_images`), and
    under "guided", samples at guidance scale `guidance` asking for every (shape,
    colour) in turn (the keys of `request_scores`). Both kinds are drawn with DDIM
    (`steps`, `eta`) from the same `seed`."""
    check_tensor("real", real, dims=4, floating=True, shape="(N, 3, S, S)")
    n = len(real)
    draw = dict(steps=steps, eta=eta, seed=seed, precision=precision)
    plain = SamplerOptions(objective=objective)
    images, _ = sample_images(model, schedule, n, plain, **draw)
    requests = label_requests(judge.world, n)
    asked = SamplerOptions(objective=objective, cond=requests, guidance=guidance)
    guided, _ = sample_images(model, schedule, n, asked, **draw)
    scores = score_images(judge, images, real)
    return scores | {"guided": request_scores(judge, guided, requests)}


def _check_sampling_args(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    options: SamplerOptions,
    sampler: str,
    batch_size: int,
    precision: Precision | None,
) -> None:
    check_module("model", model)
    for name in ("in_channels", "image_size"):
        if not isinstance(getattr(model, name, None), int):
            raise TypeError(
                f"model must say its image shape with an int `{name}`, as UNet "
                f"does; {type(model).__name__} has none"
            )
    check_instance("schedule", schedule, NoiseSchedule)
    check_int("n", n)
    check_instance("options", options, SamplerOptions)
    check_choice("sampler", sampler, SAMPLERS)
    check_int("batch_size", batch_size)
    check_optional(check_instance, "precision", precision, Precision)
    check_condition("options.cond", options.cond, n)
