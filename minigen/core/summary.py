"""A model's layers in call order, with their output shapes and parameter counts.

`layer_shapes` runs the model once with forward hooks
(`nn.Module.register_forward_hook`) on its layers, the way torchinfo and Keras'
`model.summary()` tabulate a network, so the shapes are the ones the code really
produces, not ones computed by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from minigen.core.validators import check_instance, check_module


def _output_shape(output: Any) -> tuple:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)) and all(
        isinstance(item, torch.Tensor) for item in output
    ):
        return tuple(tuple(item.shape) for item in output)
    raise TypeError(
        "layer_shapes reads tensor outputs (or tuples of them), got "
        f"{type(output).__name__}"
    )


def layer_shapes(
    model: nn.Module, *inputs: Any, names: Sequence[str] | None = None
) -> list[tuple[str, tuple, int]]:
    """Run `model(*inputs)` once and list (name, output shape, parameter count) for
    each layer, in call order.

    By default a layer is a module without submodules (a convolution, a norm, an
    activation), or any module holding parameters of its own; its count is of those
    own parameters, so the counts add up to the model's total. Functional steps
    inside a module's forward (e.g. the resize of a resize-convolution) have no row
    of their own. A layer called twice gets two rows. names: list these submodules
    instead (e.g. the blocks of a U-Net), each with all the parameters inside it.

    `inputs` are the model's own: they are not checked here, and if `model(*inputs)`
    fails, the model's own error is raised unchanged (it names the layer that
    failed, which a summary of shapes is for).
    """
    check_module("model", model)
    modules = dict(model.named_modules())
    if names is not None:
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise TypeError(
                f"names must be a list of submodule names, got {names!r}"
            )
        for name in names:
            check_instance("every entry of names", name, str)
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ValueError(
                f"no submodules named {unknown}; e.g. {list(modules)[1:6]}"
            )
        chosen = {
            name: sum(p.numel() for p in modules[name].parameters())
            for name in names
        }
    else:
        chosen = {}
        for name, module in modules.items():
            own = sum(p.numel() for p in module.parameters(recurse=False))
            if next(module.children(), None) is None or own:
                chosen[name] = own
    rows: list[tuple[str, tuple, int]] = []
    handles = []
    for name, count in chosen.items():

        def hook(
            _module: nn.Module,
            _args: Any,
            output: Any,
            name: str = name or type(model).__name__,
            count: int = count,
        ) -> None:
            rows.append((name, _output_shape(output), count))

        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return rows
