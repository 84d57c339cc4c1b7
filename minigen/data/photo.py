"""A real photo for the chapters' image operations: the portrait of Grace Hopper
that matplotlib ships (a test image of the image-processing literature, e.g. in
scikit-image), so that resampling and aliasing can be seen on a natural image
without a download.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from torch import Tensor


def grace_hopper() -> Tensor:
    """The portrait of Grace Hopper that matplotlib ships, as a (3, H, W) float
    tensor in [0, 1]."""
    from matplotlib import cbook
    from PIL import Image

    with (
        cbook.get_sample_data("grace_hopper.jpg") as file,
        Image.open(file) as photo,
    ):
        pixels = np.array(photo.convert("RGB"))  # (H, W, 3) uint8
    return rearrange(torch.from_numpy(pixels), "h w c -> c h w").float() / 255
