"""Chapters 3 and 4: reconstruction PSNR of the autoencoder and negative ELBO of the VAE, with the time taken.

Run: .venv/bin/python benchmarks/autoencoder_vae.py [--ae-steps 2500] [--vae-steps 3000] [--speed-steps 30]
Quality: an autoencoder (L = 32) and a VAE (L = 16, Bernoulli decoder, KL warm-up over the first third)
trained with the cpu-profile budgets of the chapters, scored on 1000 test scenes. Speed: training steps/s
of each model in fp32 and under bf16 autocast, measured back to back in this run (compare the ratio; the
machine is shared).
Targets (cpu profile, this 2-core CPU): autoencoder above 25 dB PSNR; VAE negative ELBO below 150 nats per
image; each model trained in under 2 minutes.
"""

import argparse
import time

import torch

from minigen.core.runtime import Precision, choose_precision, cpu_supports_bf16
from minigen.data.shapes import ShapesWorld
from minigen.models import autoencoder as ae
from minigen.models import vae

AE_TARGET_DB, VAE_TARGET_NATS, TIME_TARGET_S = 25.0, 150.0, 120.0


def steps_per_second(train, precision: Precision, steps: int) -> float:
    _, history = train(steps=steps, precision=precision, progress=False)
    return steps / history.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ae-steps",
        type=int,
        default=2500,
        help="autoencoder steps (cpu profile: 2500)",
    )
    parser.add_argument(
        "--vae-steps", type=int, default=3000, help="VAE steps (cpu profile: 3000)"
    )
    parser.add_argument(
        "--speed-steps",
        type=int,
        default=30,
        help="steps per precision for the speed figures",
    )
    args = parser.parse_args()
    world = ShapesWorld()
    test = world.scenes(1000, split="test").images
    precision = choose_precision()
    print(f"{torch.get_num_threads()} threads, {precision}")

    def train_ae(**kwargs):
        return ae.train_autoencoder(world, 32, **kwargs)

    def train_vae(**kwargs):
        return vae.train_vae(world, 16, kl_warmup=kwargs["steps"] // 3, **kwargs)

    start = time.perf_counter()
    autoencoder, ae_history = train_ae(
        steps=args.ae_steps, precision=precision, progress=False
    )
    ae_scores = ae.reconstruction_metrics(autoencoder, test)
    print(
        f"autoencoder L = 32, {args.ae_steps} steps x 32 scenes: trained in {ae_history.seconds:.0f} s; "
        f"test PSNR {ae_scores['psnr']:.2f} dB, MSE {ae_scores['mse']:.5f} "
        f"(target > {AE_TARGET_DB:.0f} dB: {'met' if ae_scores['psnr'] > AE_TARGET_DB else 'NOT met'})"
    )

    model, vae_history = train_vae(
        steps=args.vae_steps, precision=precision, progress=False
    )
    scores = vae.negative_elbo_nats(
        model, test, generator=torch.Generator().manual_seed(0)
    )
    dims = test[0].numel()
    print(
        f"VAE L = 16, {args.vae_steps} steps x 32 scenes: trained in {vae_history.seconds:.0f} s; "
        f"test negative ELBO {scores['nelbo']:.1f} nats/image = {vae.bits_per_dim(scores['nelbo'], dims):.4f} "
        f"bits/dim (reconstruction {scores['reconstruction']:.1f} + KL {scores['kl']:.1f} nats) "
        f"(target < {VAE_TARGET_NATS:.0f} nats: {'met' if scores['nelbo'] < VAE_TARGET_NATS else 'NOT met'})"
    )
    slowest = max(ae_history.seconds, vae_history.seconds)
    print(
        f"time target: each model under {TIME_TARGET_S:.0f} s: {'met' if slowest < TIME_TARGET_S else 'NOT met'} "
        f"(total wall {time.perf_counter() - start:.0f} s)"
    )

    fp32 = choose_precision(dtype="fp32")
    for name, train in [("autoencoder", train_ae), ("VAE", train_vae)]:
        rates = {
            str(p): steps_per_second(train, p, args.speed_steps)
            for p in [fp32, precision]
        }
        ratio = rates[str(precision)] / rates[str(fp32)]
        print(
            f"{name:12} "
            + ", ".join(f"{p}: {r:.1f} steps/s" for p, r in rates.items())
            + (f" ({ratio:.2f}x)" if precision.dtype != torch.float32 else "")
        )
    if not cpu_supports_bf16() and precision.device.type == "cpu":
        print("this CPU has no fast bf16: both rows ran in fp32")


if __name__ == "__main__":
    main()
