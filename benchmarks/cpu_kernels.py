"""Do PyTorch's AVX-512 and AVX2 kernels round alike? (book/setup.md, "Precision")

Run: .venv/bin/python benchmarks/cpu_kernels.py

Computes a convolution, a matrix product, a softmax and a GELU in fp32 twice, each
in a fresh process: once with the kernels PyTorch picks for this CPU, once capped at
AVX2 (the environment variables ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and
MKL_ENABLE_INSTRUCTIONS). Prints each process's kernel level and, per operation,
whether the results are bit for bit equal and their largest difference. On a CPU
without AVX-512 the cap changes nothing: both processes report AVX2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

AVX2_CAP = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}

COMPUTE = """
import sys
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x, w = torch.randn(64, 32, 16, 16), torch.randn(32, 32, 3, 3)
a, b = torch.randn(256, 512), torch.randn(512, 256)
results = {
    "conv2d 3x3": F.conv2d(x, w, padding=1),
    "matmul": a @ b,
    "softmax": torch.softmax(a, -1),
    "gelu": F.gelu(a),
}
torch.save(results, sys.argv[1])
print(torch.backends.cpu.get_cpu_capability())
"""


def compute(path: Path, capped: bool) -> str:
    """Run COMPUTE in a fresh process, results to `path`; its kernel level."""
    env = {
        name: value for name, value in os.environ.items() if name not in AVX2_CAP
    }
    env |= AVX2_CAP if capped else {}
    done = subprocess.run(
        [sys.executable, "-c", COMPUTE, str(path)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        native, capped = Path(folder, "native.pt"), Path(folder, "capped.pt")
        print(f"kernels picked: {compute(native, False)}; capped: "
              f"{compute(capped, True)}")  # fmt: skip
        first, second = torch.load(native), torch.load(capped)
    print(f"{'operation':12} {'bit-equal':>9} {'largest difference':>19}")
    for name, value in first.items():
        gap = (value - second[name]).abs().max().item()
        equal = str(torch.equal(value, second[name]))
        print(f"{name:12} {equal:>9} {gap:19.2e}")


if __name__ == "__main__":
    main()
