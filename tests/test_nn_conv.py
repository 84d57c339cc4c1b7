"""Tests for minigen.nn.conv (encoder/decoder shapes and input checks), the entry checks of the
upsamplers of minigen.nn.resample, and layer_shapes against real shapes and counts."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen.core.summary import layer_shapes
from minigen.nn.conv import ConvDecoder, ConvEncoder
from minigen.nn.resample import (
    PixelShuffleUp,
    ResizeConvUp,
    TransposedConvUp,
    make_upsampler,
)

WIDTHS = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)


@settings(max_examples=15, deadline=None)
@given(
    widths=WIDTHS,
    out_features=st.integers(1, 9),
    in_channels=st.integers(1, 4),
    batch=st.integers(1, 3),
)
def test_encoder_shape(widths, out_features, in_channels, batch):
    encoder = ConvEncoder(
        in_channels=in_channels,
        widths=widths,
        out_features=out_features,
        image_size=16,
    )
    assert encoder(torch.rand(batch, in_channels, 16, 16)).shape == (
        batch,
        out_features,
    )
    # the last feature map halves the side once per width
    side = 16 // 2 ** len(widths)
    assert encoder.features(torch.rand(batch, in_channels, 16, 16)).shape == (
        batch,
        widths[-1],
        side,
        side,
    )


@settings(max_examples=15, deadline=None)
@given(
    widths=WIDTHS,
    in_features=st.integers(1, 9),
    out_channels=st.integers(1, 4),
    batch=st.integers(1, 3),
    upsampler=st.sampled_from(
        ["resize-conv nearest", "transposed k4s2", "pixel shuffle"]
    ),
)
def test_decoder_shape(widths, in_features, out_channels, batch, upsampler):
    decoder = ConvDecoder(
        in_features,
        widths=widths,
        out_channels=out_channels,
        upsampler=upsampler,
        image_size=16,
    )
    assert decoder(torch.randn(batch, in_features)).shape == (
        batch,
        out_channels,
        16,
        16,
    )


def test_decoder_outputs_logits_not_probabilities():
    torch.manual_seed(0)
    decoder = ConvDecoder(4, widths=(8, 8), image_size=8)
    with torch.no_grad():
        decoder.to_image.bias.fill_(
            5.0
        )  # no final activation: the bias shifts the output unbounded
        out = decoder(torch.randn(3, 4))
    assert out.min() < 0 or out.max() > 1


def test_default_blocks_match_the_spec():
    encoder, decoder = ConvEncoder(out_features=16), ConvDecoder(16)
    x = torch.rand(2, 3, 32, 32)
    assert encoder(x).shape == (2, 16) and decoder(encoder(x)).shape == (
        2,
        3,
        32,
        32,
    )
    assert decoder.start.out_features == 128 * 4 * 4  # linear to (128, 4, 4)


def test_bad_arguments_fail_early():
    with pytest.raises(ValueError, match="divisible"):
        ConvEncoder(widths=(8, 8, 8), image_size=12)
    with pytest.raises(ValueError, match="upsampler"):
        ConvDecoder(4, upsampler="bicubic")
    with pytest.raises(ValueError, match="widths"):
        ConvDecoder(4, widths=())
    with pytest.raises(TypeError):
        ConvEncoder(widths=(8, 2.5))
    with pytest.raises(ValueError, match="expects images"):
        ConvEncoder(out_features=4)(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="expects codes"):
        ConvDecoder(4)(torch.rand(1, 5))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: ConvEncoder(in_channels=0),
            ValueError,
            "in_channels must be an int >= 1",
        ),
        (
            lambda: ConvEncoder(in_channels=True),
            TypeError,
            "in_channels must be an int",
        ),
        (
            lambda: ConvEncoder(widths="abc"),
            TypeError,
            "widths must be a sequence of ints",
        ),
        (
            lambda: ConvEncoder(widths=(8, 0)),
            ValueError,
            "every entry of widths must be an int >= 1",
        ),
        (
            lambda: ConvEncoder(image_size=32.0),
            TypeError,
            "image_size must be an int",
        ),
        (
            lambda: ConvEncoder(out_features=10**9),
            ValueError,
            "out_features must be an int <=",
        ),
        (
            lambda: ConvDecoder(in_features=-1),
            ValueError,
            "in_features must be an int >= 1",
        ),
        (
            lambda: ConvDecoder(4, out_channels=2.0),
            TypeError,
            "out_channels must be an int",
        ),
        (
            lambda: ConvDecoder(4, upsampler=None),
            ValueError,
            "upsampler must be one of",
        ),
        (
            lambda: ConvDecoder(4, widths=(8, 8), image_size=6),
            ValueError,
            "divisible by 2\\^2",
        ),
    ],
)
def test_constructors_give_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_forward_inputs_are_checked_before_the_math():
    encoder, decoder = (
        ConvEncoder(widths=(4,), out_features=3, image_size=8),
        ConvDecoder(3, widths=(4,), image_size=8),
    )
    with pytest.raises(ValueError, match="x must be a 4-d tensor"):
        encoder(torch.rand(3, 8, 8))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        encoder(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        encoder([[0.0]])
    with pytest.raises(ValueError, match="z must be a 2-d tensor"):
        decoder(torch.rand(3))
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        decoder(torch.zeros(2, 3, dtype=torch.long))
    assert encoder(torch.rand(2, 3, 8, 8)).shape == (2, 3) and decoder(
        torch.rand(2, 3)
    ).shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: TransposedConvUp(0), ValueError, "channels must be an int >= 1"),
        (lambda: TransposedConvUp(2.0), TypeError, "channels must be an int"),
        (
            lambda: TransposedConvUp(4, kernel=5),
            ValueError,
            "kernel must be one of 3, 4",
        ),
        (
            lambda: TransposedConvUp(4, kernel=3.0),
            TypeError,
            "kernel must be an int",
        ),
        (
            lambda: ResizeConvUp(4, mode="bicubic"),
            ValueError,
            "mode must be one of 'nearest', 'bilinear'",
        ),
        (
            lambda: PixelShuffleUp(4, icnr="yes"),
            TypeError,
            "icnr must be True or False",
        ),
        (lambda: PixelShuffleUp(True), TypeError, "channels must be an int"),
        (lambda: make_upsampler(3, 4), ValueError, "valid names"),
    ],
)
def test_upsamplers_reject_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: TransposedConvUp(4),
        lambda: ResizeConvUp(4, "bilinear"),
        lambda: PixelShuffleUp(4),
    ],
)
def test_upsamplers_check_their_input(make):
    layer = make()
    assert layer(torch.rand(2, 4, 3, 5)).shape == (2, 4, 6, 10)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4, H, W\)"):
        layer(torch.rand(2, 3, 3, 5))
    with pytest.raises(ValueError, match="x must be a 4-d tensor"):
        layer(torch.rand(4, 3, 5))


def _reference_rows(model, x):
    """Independent reference: wrap each leaf's forward (no hooks) and record what it returns."""
    rows = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            original = module.forward

            def wrapped(
                *args, _original=original, _name=name, _module=module, **kwargs
            ):
                out = _original(*args, **kwargs)
                rows.append(
                    (
                        _name,
                        tuple(out.shape),
                        sum(p.numel() for p in _module.parameters()),
                    )
                )
                return out

            module.forward = wrapped
    with torch.no_grad():
        model(x)
    return rows


@pytest.mark.parametrize(
    "make, x",
    [
        (
            lambda: ConvEncoder(widths=(4, 8), out_features=5, image_size=8),
            torch.rand(2, 3, 8, 8),
        ),
        (lambda: ConvDecoder(5, widths=(8, 4), image_size=8), torch.rand(2, 5)),
    ],
)
def test_layer_shapes_matches_real_shapes_and_counts(make, x):
    torch.manual_seed(0)
    rows = layer_shapes(make(), x)
    assert rows == _reference_rows(make(), x)
    model = make()
    assert sum(count for _, _, count in rows) == sum(
        p.numel() for p in model.parameters()
    )
    assert rows[-1][1] == tuple(model(x).shape)


def test_layer_shapes_counts_parameters_held_by_a_container_and_removes_hooks():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x) * self.scale

    model = Scaled()
    rows = layer_shapes(model, torch.rand(2, 4))
    assert rows == [("linear", (2, 3), 15), ("Scaled", (2, 3), 3)]
    assert not model._forward_hooks and not model.linear._forward_hooks


def test_layer_shapes_of_chosen_blocks_with_several_inputs():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5))
            self.second = nn.Linear(5, 2)

        def forward(self, x, scale):
            return self.second(self.first(x)) * scale

    model = TwoInputs()
    rows = layer_shapes(model, torch.zeros(7, 3), 2.0, names=["first", "second"])
    assert rows == [
        ("first", (7, 5), 3 * 4 + 4 + 4 * 5 + 5),
        ("second", (7, 2), 5 * 2 + 2),
    ]
    with pytest.raises(ValueError, match="no submodules named"):
        layer_shapes(model, torch.zeros(7, 3), 2.0, names=["third"])
