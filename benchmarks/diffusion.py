"""Chapter 5: training speed of the U-Net (fp32 vs bf16 autocast), sample quality after the cpu-profile budget,
and sampling time per image for each sampler.

Run: .venv/bin/python benchmarks/diffusion.py [--steps 2500] [--base 16] [--objective v] [--samples 500]
     (--steps 0 measures speed only)
Speed: training images/s of the chapter's class-conditional U-Net, fp32 and bf16 autocast back to back in one
run (compare the ratio; the machine is shared). Quality: the model trained for --steps on single-object scenes,
then DDIM-50 unconditional samples scored by the chapter-1 oracle: Fréchet oracle distance to real test scenes
(floor: real vs other real scenes) and the share read as valid scenes; conditional samples (guidance 2) scored
for the requested shape and colour. Sampling: milliseconds per image for DDIM 10/20/50/100 and DDPM 1000.
"""
import argparse
import time

import torch

from minigen import diffusion
from minigen.eval import metrics
from minigen.models import oracle
from minigen.data.shapes import ShapesWorld
from minigen.models.oracle import load_oracle
from minigen.core.runtime import choose_precision
from minigen.models.unet import UNet


def training_images_per_second(model_config: dict, world: ShapesWorld, precision, objective: str, steps: int) -> float:
    torch.manual_seed(0)
    model = UNet(**model_config)
    schedule = diffusion.NoiseSchedule.cosine()
    _, history = diffusion.train_diffusion(model, schedule, batches(world), steps=steps, objective=objective,
                                           precision=precision, progress=False)
    return steps * 32 / history.seconds


def batches(world: ShapesWorld, size: int = 32):
    def batch(step: int):
        scenes = world.scenes(range(step * size, (step + 1) * size), split="train")
        return scenes.images * 2 - 1, torch.stack([scenes.shape[:, 0], scenes.colour[:, 0]], dim=1)
    return batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2500, help="training steps of 32 scenes (cpu profile: 2500)")
    parser.add_argument("--base", type=int, default=16, help="U-Net base channels (cpu profile: 16)")
    parser.add_argument("--objective", default="v", choices=diffusion.OBJECTIVES)
    parser.add_argument("--samples", type=int, default=500, help="samples to score")
    parser.add_argument("--speed-steps", type=int, default=10, help="steps per precision for the speed figure")
    args = parser.parse_args()
    world = ShapesWorld(max_objects=1)
    config = dict(base_channels=args.base, class_counts=(len(world.shapes), len(world.colours)))
    precision, fp32 = choose_precision(), choose_precision(dtype="fp32")
    print(f"{torch.get_num_threads()} threads, {precision}; U-Net {config}, "
          f"{sum(p.numel() for p in UNet(**config).parameters()):,} parameters")
    rates = {str(p): training_images_per_second(config, world, p, args.objective, args.speed_steps)
             for p in [fp32, precision]}
    print("training: " + ", ".join(f"{p}: {r:.0f} images/s" for p, r in rates.items())
          + f" ({rates[str(precision)] / rates[str(fp32)]:.2f}x)")
    if args.steps == 0:
        return

    torch.manual_seed(0)
    schedule = diffusion.NoiseSchedule.cosine()
    model, history = diffusion.train_diffusion(UNet(**config), schedule, batches(world), steps=args.steps,
                                               objective=args.objective, label_dropout=0.2, ema_decay=0.995,
                                               precision=precision, progress=False)
    print(f"trained {args.steps} steps x 32 scenes in {history.seconds:.0f} s")
    judge = load_oracle(ShapesWorld(), steps=1500)
    n = args.samples
    real = world.scenes(range(n), split="test").images
    floor = metrics.frechet_oracle_distance(judge, real, world.scenes(range(n, 2 * n), split="test").images)

    def draw(steps: int, count: int, sampler: str = "ddim", labels=None, guidance=None):
        labels = model.null_labels(count) if labels is None else labels
        start = time.perf_counter()
        with precision.autocast():
            options = dict(objective=args.objective, labels=labels, guidance=guidance,
                           null_labels=model.null_labels(count), generator=torch.Generator().manual_seed(0))
            if sampler == "ddpm":
                x = diffusion.ddpm_sample(model, schedule, (count, 3, 32, 32), **options)
            else:
                x = diffusion.ddim_sample(model, schedule, (count, 3, 32, 32), steps=steps, **options)
        return ((x.float() + 1) / 2).clamp(0, 1), 1000 * (time.perf_counter() - start) / count

    print(f"Fréchet oracle distance, {n} images vs {n} real test scenes; floor (real vs real) {floor:.2f}")
    for name, steps, count, sampler in [("DDIM 10", 10, n, "ddim"), ("DDIM 20", 20, n, "ddim"),
                                        ("DDIM 50", 50, n, "ddim"), ("DDIM 100", 100, n, "ddim"),
                                        ("DDPM 1000", 1000, min(n, 100), "ddpm")]:
        images, ms = draw(steps, count, sampler)
        valid = oracle.parse(judge, images)["valid"].float().mean().item()
        reference = real[:count]
        print(f"  {name:9} {ms:8.1f} ms/image  FD {metrics.frechet_oracle_distance(judge, reference, images):8.2f}"
              f"  valid {100 * valid:5.1f}%  ({count} images)")
    requests = torch.stack([torch.arange(n) % len(world.shapes), torch.arange(n) // len(world.shapes) % len(world.colours)], 1)
    images, _ = draw(50, n, labels=requests, guidance=2.0)
    read = oracle.parse(judge, images)
    first = oracle.first_object(read, world)
    shape_ok = (first["shape"] == requests[:, 0]).float().mean().item()
    colour_ok = (first["colour"] == requests[:, 1]).float().mean().item()
    print(f"conditional, guidance 2, DDIM 50: requested shape read {100 * shape_ok:.1f}%, colour {100 * colour_ok:.1f}%")


if __name__ == "__main__":
    main()
