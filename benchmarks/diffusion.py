"""Chapter 5: training speed of the U-Net (fp32 vs bf16 autocast), sample quality after the cpu-profile budget,
and sampling time per image for each sampler.

Run: .venv/bin/python benchmarks/diffusion.py [--steps 2500] [--base 16] [--objective v] [--samples 500]
     (--steps 0 measures speed only)
Speed: training images/s of the chapter's class-conditional U-Net, fp32 and bf16 autocast back to back in one
run (compare the ratio; the machine is shared). Quality: the model trained for --steps on single-object scenes,
then DDIM-50 unconditional samples scored by the chapter-1 oracle: Fréchet oracle distance to real test scenes
(floor: real vs other real scenes) and the share read as valid scenes; conditional samples (guidance 2) scored
for the requested shape and colour. Sampling: milliseconds per image for DDIM 10/20/50/100 and DDPM 1000.
The batching, sampling and scoring are minigen.eval.harness's, as in the notebook.
"""

import argparse

import torch

from minigen import diffusion
from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld
from minigen.eval import harness, metrics
from minigen.models.oracle import load_oracle
from minigen.models.unet import UNet

BATCH = 32


def training_images_per_second(
    model_config: dict, world: ShapesWorld, precision, objective: str, steps: int
) -> float:
    torch.manual_seed(0)
    model = UNet(**model_config)
    schedule = diffusion.NoiseSchedule.cosine()
    _, history = diffusion.train_diffusion(
        model,
        schedule,
        harness.scene_batches(world, BATCH),
        steps=steps,
        objective=objective,
        precision=precision,
        progress=False,
    )
    return steps * BATCH / history.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        type=int,
        default=2500,
        help="training steps of 32 scenes (cpu profile: 2500)",
    )
    parser.add_argument(
        "--base", type=int, default=16, help="U-Net base channels (cpu profile: 16)"
    )
    parser.add_argument("--objective", default="v", choices=diffusion.OBJECTIVES)
    parser.add_argument("--samples", type=int, default=500, help="samples to score")
    parser.add_argument(
        "--speed-steps",
        type=int,
        default=10,
        help="steps per precision for the speed figure",
    )
    args = parser.parse_args()
    world = ShapesWorld(max_objects=1)
    config = dict(
        base_channels=args.base,
        class_counts=(len(world.shapes), len(world.colours)),
    )
    precision, fp32 = choose_precision(), choose_precision(dtype="fp32")
    print(
        f"{torch.get_num_threads()} threads, {precision}; U-Net {config}, "
        f"{sum(p.numel() for p in UNet(**config).parameters()):,} parameters"
    )
    rates = {
        str(p): training_images_per_second(
            config, world, p, args.objective, args.speed_steps
        )
        for p in [fp32, precision]
    }
    print(
        "training: "
        + ", ".join(f"{p}: {r:.0f} images/s" for p, r in rates.items())
        + f" ({rates[str(precision)] / rates[str(fp32)]:.2f}x)"
    )
    if args.steps == 0:
        return

    torch.manual_seed(0)
    schedule = diffusion.NoiseSchedule.cosine()
    model, history = diffusion.train_diffusion(
        UNet(**config),
        schedule,
        harness.scene_batches(world, BATCH),
        steps=args.steps,
        objective=args.objective,
        cond_dropout=0.2,
        ema_decay=0.995,
        precision=precision,
        progress=False,
    )
    print(f"trained {args.steps} steps x {BATCH} scenes in {history.seconds:.0f} s")
    judge = load_oracle(ShapesWorld(), steps=1500)
    n = args.samples
    real = world.scenes(range(n), split="test").images
    floor = metrics.frechet_oracle_distance(
        judge, real, world.scenes(range(n, 2 * n), split="test").images
    )
    unconditional = diffusion.SamplerOptions(objective=args.objective)

    print(
        f"Fréchet oracle distance, {n} images vs {n} real test scenes; floor (real vs real) {floor:.2f}"
    )
    for name, steps, count, sampler in [
        ("DDIM 10", 10, n, "ddim"),
        ("DDIM 20", 20, n, "ddim"),
        ("DDIM 50", 50, n, "ddim"),
        ("DDIM 100", 100, n, "ddim"),
        ("DDPM 1000", 1000, min(n, 100), "ddpm"),
    ]:
        images, seconds = harness.sample_images(
            model,
            schedule,
            count,
            unconditional,
            sampler=sampler,
            steps=steps,
            batch_size=count,
            precision=precision,
        )
        scores = harness.score_images(judge, images, real[:count])
        print(
            f"  {name:9} {1000 * seconds:8.1f} ms/image  FD {scores['fd']:8.2f}"
            f"  valid {100 * scores['valid']:5.1f}%  ({count} images)"
        )
    requests = harness.label_requests(world, n)
    guided = diffusion.SamplerOptions(
        objective=args.objective, cond=requests, guidance=2.0
    )
    images, _ = harness.sample_images(
        model, schedule, n, guided, steps=50, batch_size=n, precision=precision
    )
    read = harness.request_scores(judge, images, requests)
    print(
        f"conditional, guidance 2, DDIM 50: requested shape read {100 * read['shape']:.1f}%, "
        f"colour {100 * read['colour']:.1f}%"
    )


if __name__ == "__main__":
    main()
