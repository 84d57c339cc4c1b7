"""Tests of minigen.core.summary.layer_shapes: shapes and counts against hand-computed ones,
hooks removed whatever happens, and clear errors for a wrong model or wrong names."""

import pytest
import torch
from torch import nn

from minigen.core.summary import layer_shapes


def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2)
    )


def test_rows_are_the_shapes_and_parameter_counts_of_each_layer():
    rows = layer_shapes(small_model(), torch.zeros(2, 3, 8, 8))
    # conv 3 -> 4, 3x3: 3*4*9 + 4 weights; conv 4 -> 2, 3x3 stride 2: (8 - 3) // 2 + 1 = 3 per side
    assert rows == [
        ("0", (2, 4, 8, 8), 3 * 4 * 9 + 4),
        ("1", (2, 4, 8, 8), 0),
        ("2", (2, 2, 3, 3), 4 * 2 * 9 + 2),
    ]


def test_hooks_are_removed_even_when_the_model_fails():
    model = small_model()
    with pytest.raises(RuntimeError):
        # 5 channels into a 3-channel conv: torch's error
        layer_shapes(model, torch.zeros(2, 5, 8, 8))
    assert all(not module._forward_hooks for module in model.modules())


class Doubler(nn.Module):
    def forward(self, x):
        return {"twice": 2 * x}


@pytest.mark.parametrize(
    "call, error",
    [
        (
            lambda: layer_shapes("model", torch.zeros(1)),
            "model must be an nn.Module, got str 'model'",
        ),
        (
            lambda: layer_shapes(nn.Linear, torch.zeros(1)),
            "model must be a model instance, got the class Linear",
        ),
        (
            lambda: layer_shapes(small_model(), torch.zeros(2, 3, 8, 8), names="0"),
            "names must be a list of submodule names, got '0'",
        ),
        (
            lambda: layer_shapes(small_model(), torch.zeros(2, 3, 8, 8), names=[0]),
            "every entry of names must be str, got int 0",
        ),
        (
            lambda: layer_shapes(nn.Sequential(Doubler()), torch.zeros(1)),
            "layer_shapes reads tensor outputs .or tuples of them., got dict",
        ),
    ],
)
def test_wrong_types_get_a_type_error(call, error):
    with pytest.raises(TypeError, match=error):
        call()


def test_unknown_names_are_listed():
    with pytest.raises(ValueError, match=r"no submodules named \['9'\]"):
        layer_shapes(small_model(), torch.zeros(2, 3, 8, 8), names=["9"])
