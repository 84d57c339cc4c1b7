"""The book's data: a procedurally generated world of captioned shapes, one photo, torchvision adapters.

The shapes world draws scenes of coloured shapes on a coarse grid, one object per cell, with exact
labels and a caption ("a small red circle at the top left"). Techniques it is built from:

- Counter-based random numbers: every attribute is a hash of (seed, split, index, field), so a scene
  is a pure function of its index (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
  SC 2011), hashed with the output function of splitmix64 (Steele, Lea & Flood, "Fast splittable
  pseudorandom number generators", OOPSLA 2014).
- Signed distance functions of 2-D shapes (Inigo Quilez's catalogue of 2-D distance functions) and
  anti-aliasing by analytic coverage, coverage = clamp(1/2 - sdf, 0, 1) with the sdf in pixels
  (Green, "Improved alpha-tested magnification for vector textures and special effects", 2007).
- Painting later objects over earlier ones with the "over" operator (Porter & Duff, "Compositing
  digital images", SIGGRAPH 1984).
- Held-out (colour, shape) combinations to measure compositional generalisation, as in CLEVR-CoGenT
  (Johnson et al., "CLEVR", CVPR 2017).

Also here: `grace_hopper()`, the photo matplotlib ships, and `load_torchvision` for MNIST,
Fashion-MNIST and CIFAR-10 when the internet is reachable.
"""
from __future__ import annotations

from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor


_TORCHVISION_DATASETS = {  # name -> (torchvision class, folder torchvision reads under root)
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


def load_torchvision(
    name: str, root: str | Path, train: bool = True, download: bool = True
) -> tuple[Tensor, Tensor]:
    """A whole torchvision dataset as tensors: images (N, C, H, W) float in [0, 1] and labels (N,) long.

    name: "mnist", "fashion-mnist" or "cifar10" (any case). Downloads into `root` unless the files are there.
    """
    key = name.lower()
    if key not in _TORCHVISION_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(_TORCHVISION_DATASETS)}")
    try:
        from torchvision import datasets
    except ImportError as error:
        raise ImportError("load_torchvision needs torchvision: pip install torchvision") from error
    class_name, folder = _TORCHVISION_DATASETS[key]
    try:
        dataset = getattr(datasets, class_name)(root=root, train=train, download=download)
    except (RuntimeError, OSError) as error:  # urllib's URLError is an OSError
        split = "training" if train else "test"
        attempt = "and downloading them failed: this machine seems to be offline" if download else "(download=False)"
        raise RuntimeError(
            f"could not load the {name} {split} set: the torchvision files are not in {Path(root) / folder} "
            f"{attempt}. Fix: run where the internet is reachable (e.g. on Colab) with download=True, or copy "
            f"the {class_name} files into {Path(root) / folder}. torchvision said: {error}"
        ) from error
    images = torch.as_tensor(dataset.data)  # MNIST: (N, H, W) uint8 tensor; CIFAR-10: (N, H, W, C) numpy
    if images.dim() == 3:
        images = rearrange(images, "n h w -> n 1 h w")
    else:
        images = rearrange(images, "n h w c -> n c h w")
    return images.float() / 255, torch.as_tensor(dataset.targets, dtype=torch.long)
