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


import numpy as np
import torch
from einops import rearrange
from torch import Tensor


# ---------------------------------------------------------------------------------------------
# A real photo and torchvision datasets
# ---------------------------------------------------------------------------------------------


def grace_hopper() -> Tensor:
    """The portrait of Grace Hopper that matplotlib ships, as a (3, H, W) float tensor in [0, 1]."""
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as file, Image.open(file) as photo:
        pixels = np.array(photo.convert("RGB"))  # (H, W, 3) uint8
    return rearrange(torch.from_numpy(pixels), "h w c -> c h w").float() / 255
