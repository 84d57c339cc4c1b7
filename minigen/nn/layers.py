"""Small layers that every network of the book is built from.

- GroupNorm, Y. Wu, K. He, "Group Normalization", ECCV 2018, with
  SiLU(x) = x sigmoid(x), S. Elfwing et al. 2018 ("Swish", P. Ramachandran et al.
  2017): the pairing of DDPM-style U-Nets. GroupNorm normalises each image on its
  own, so a model behaves the same in train and eval mode and on a batch of one,
  which generators need.
- Zero initialisation of a branch's last layer, so that a fresh residual block is
  the identity (the DDPM U-Net of J. Ho et al. 2020; "Fixup", H. Zhang et al.,
  ICLR 2019).
- Halving the resolution with a stride-2 3x3 convolution, the downsampling of the
  all-convolutional net, J. T. Springenberg et al., "Striving for Simplicity",
  ICLR-W 2015.
- `CheckedModule`: a module whose input checks run in a forward pre-hook, so that
  the `forward` the book displays is the math alone.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from minigen.core.validators import check_int, check_module

# GroupNorm uses gcd(8, channels) groups: any width works, and 8 or more get 8
MAX_GROUPS = 8


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over `channels` with gcd(MAX_GROUPS, channels) groups."""
    channels = check_int("channels", channels)
    return nn.GroupNorm(math.gcd(MAX_GROUPS, channels), channels)


def norm_act(channels: int) -> nn.Sequential:
    """group_norm(channels), then SiLU."""
    return nn.Sequential(group_norm(channels), nn.SiLU())


def zero_init(module: nn.Module) -> nn.Module:
    """Set every parameter of `module` to 0 and return it: its branch outputs 0."""
    for parameter in check_module("module", module).parameters():
        nn.init.zeros_(parameter)
    return module


def downsample(c_in: int, c_out: int | None = None) -> nn.Conv2d:
    """Stride-2 3x3 convolution: (B, c_in, H, W) -> (B, c_out, H/2, W/2), even H, W.

    o = floor((i + 2p - k) / s) + 1 = i / 2 for k = 3, p = 1, s = 2 and even i.
    """
    c_in = check_int("c_in", c_in)
    c_out = c_in if c_out is None else check_int("c_out", c_out)
    return nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)


class CheckedModule(nn.Module):
    """An nn.Module that calls `self.check_inputs(...)` with forward's arguments
    before each forward (a forward pre-hook registered here), so that `forward`
    stays the math.

    A subclass defines `check_inputs` with the same parameters as its `forward`; it
    raises TypeError or ValueError with a clear message and returns nothing. The
    hook is a bound method, so `copy.deepcopy` (e.g. of an EMA model) rebinds it to
    the copy.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_forward_pre_hook(self._run_checks, with_kwargs=True)

    def _run_checks(
        self, _module: nn.Module, args: tuple, kwargs: dict[str, Any]
    ) -> None:
        self.check_inputs(*args, **kwargs)

    def check_inputs(self, *args: Any, **kwargs: Any) -> None:
        """Check forward's arguments; a subclass overrides this."""
        raise NotImplementedError(f"{type(self).__name__} must define check_inputs")
