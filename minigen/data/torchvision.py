"""MNIST, Fashion-MNIST and CIFAR-10 as whole tensors, read through torchvision.

The datasets: Y. LeCun et al., "Gradient-based learning applied to document
recognition", Proc. IEEE 1998 (MNIST); H. Xiao, K. Rasul, R. Vollgraf,
"Fashion-MNIST", arXiv:1708.07747, 2017; A. Krizhevsky, "Learning multiple layers of
features from tiny images", 2009 (CIFAR-10). They need the internet once (e.g. on
Colab); the book itself runs offline on the shapes world.
"""

from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor

from minigen.core.validators import (
    check_bool,
    check_choice,
    check_instance,
    check_path,
)

# name -> (torchvision class, the folder torchvision reads under root)
_TORCHVISION_DATASETS = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


def load_torchvision(
    name: str, root: str | Path, train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    """A whole torchvision dataset as tensors: images (N, C, H, W) float in [0, 1]
    and labels (N,) long.

    name: "mnist", "fashion-mnist" or "cifar10" (any case). Downloads into `root`
    unless the files are there (or download=False).
    """
    name = check_instance("name", name, str)
    key = check_choice(
        "name (any case)", name.lower(), tuple(_TORCHVISION_DATASETS)
    )
    root = check_path("root", root)
    train, download = check_bool("train", train), check_bool("download", download)
    try:
        from torchvision import datasets
    except ImportError as error:
        raise ImportError(
            "load_torchvision needs torchvision: pip install torchvision"
        ) from error
    class_name, folder = _TORCHVISION_DATASETS[key]
    try:
        dataset = getattr(datasets, class_name)(
            root=root, train=train, download=download
        )
    except (RuntimeError, OSError) as error:  # urllib's URLError is an OSError
        split = "training" if train else "test"
        offline = "and downloading them failed: this machine seems to be offline"
        attempt = offline if download else "(download=False)"
        raise RuntimeError(
            f"could not load the {name} {split} set: the torchvision files are not "
            f"in {root / folder} {attempt}. Fix: run where the internet is "
            "reachable (e.g. on Colab) with download=True, or copy the "
            f"{class_name} files into {root / folder}. torchvision said: {error}"
        ) from error
    # MNIST: (N, H, W) uint8 tensor; CIFAR-10: (N, H, W, C) NumPy array
    images = torch.as_tensor(dataset.data)
    if images.dim() == 3:
        images = rearrange(images, "n h w -> n 1 h w")
    else:
        images = rearrange(images, "n h w c -> n c h w")
    return images.float() / 255, torch.as_tensor(dataset.targets, dtype=torch.long)
