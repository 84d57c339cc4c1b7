"""Convolutional encoder and decoder blocks shared by the autoencoder, the VAE and later decoders.

- The encoder halves the resolution with stride-2 3x3 convolutions, the downsampling of the all-convolutional
  net, J. T. Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015.
- The decoder doubles it with an upsampler of `minigen.upsample`; the default, resize-convolution with
  nearest-neighbour resizing, is the one chapter 2 measured free of checkerboard artifacts (A. Odena,
  V. Dumoulin, C. Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).
- Normalisation: GroupNorm (Y. Wu, K. He, "Group Normalization", ECCV 2018) with the SiLU activation
  (S. Elfwing et al. 2018; "Swish", P. Ramachandran et al. 2017), the pairing of DDPM-style U-Nets. We
  pick it over BatchNorm/ReLU because GroupNorm normalises each image on its own: a model behaves the same
  in train and eval mode and on a batch of one decoded sample, which generators need.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn



def _output_shape(output: Any) -> tuple:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and all(isinstance(item, torch.Tensor) for item in output):
        return tuple(tuple(item.shape) for item in output)
    raise TypeError(f"layer_shapes reads tensor outputs (or tuples of them), got {type(output).__name__}")


def layer_shapes(model: nn.Module, *inputs: Any, names: Sequence[str] | None = None) -> list[tuple[str, tuple, int]]:
    """Run `model(*inputs)` once and list (name, output shape, parameter count) for each layer, in call order.

    By default a layer is a module without submodules (a convolution, a norm, an activation), or any module
    holding parameters of its own; its count is of those own parameters, so the counts add up to the model's
    total. Functional steps inside a module's forward (e.g. the resize of a resize-convolution) have no row of
    their own. A layer called twice gets two rows.
    names: list these submodules instead (e.g. the blocks of a U-Net), each with all the parameters inside it.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if names is not None:
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ValueError(f"no submodules named {unknown}; e.g. {list(modules)[1:6]}")
        chosen = {name: sum(p.numel() for p in modules[name].parameters()) for name in names}
    else:
        chosen = {}
        for name, module in modules.items():
            own = sum(p.numel() for p in module.parameters(recurse=False))
            if next(module.children(), None) is None or own:
                chosen[name] = own
    rows: list[tuple[str, tuple, int]] = []
    handles = []
    for name, count in chosen.items():
        def hook(_module: nn.Module, _args: Any, output: Any, name: str = name or type(model).__name__,
                 count: int = count) -> None:
            rows.append((name, _output_shape(output), count))
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return rows
