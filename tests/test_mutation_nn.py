"""Tests for minigen.nn that close the gaps mutation testing found (benchmarks/mutation.py):
the residual block's scale-shift math against a functional reference, each upsampler against its
torch composition, ICNR's nearest-neighbour start, the documented defaults (4x MLP, 3x3 transposed
kernel, encoder and decoder widths that compose), sinusoids that stay float32, masks and NULL
conditions built on the inputs' device ("meta" stands in for a GPU), empty batches, size caps, and
error messages that name the argument and its expected layout."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.nn.attention import (
    CrossAttention2d,
    MultiHeadAttention,
    SelfAttention2d,
    attention,
    causal_mask,
    combine_masks,
    padding_mask,
)
from minigen.nn.conv import ConvDecoder, ConvEncoder
from minigen.nn.embeddings import (
    MAX_CLASSES,
    EmbeddingProjection,
    LabelEmbedding,
    LearnedPositions,
    TimestepEmbedding,
    TokenStates,
    cat_conditions,
    sinusoidal_positions,
    timestep_embedding,
    where_condition,
)
from minigen.nn.layers import zero_init
from minigen.nn.resample import (
    PixelShuffleUp,
    ResizeConvUp,
    TransposedConvUp,
    make_upsampler,
)
from minigen.nn.residual import ResidualBlock
from minigen.nn.transformer import TransformerBlock

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (the zero-initialised ones and the norms' affine maps included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=g))
    return module


# --- math against independent references ------------------------------------------------------------------


def residual_reference(block: ResidualBlock, x, emb, c_in, c_out):
    """Nichol & Dhariwal's block written with torch.nn.functional: GroupNorm(gcd(8, C) groups), SiLU,
    conv3x3, GroupNorm(h) (1 + scale) + shift with (scale, shift) = Linear(SiLU(emb)), SiLU, conv3x3,
    plus the skip (identity, or a 1x1 convolution when the widths differ)."""
    norm_in, conv_in = block.in_layers[0][0], block.in_layers[1]
    linear, conv_out = block.emb_projection[1], block.out_layers[2]
    h = F.silu(F.group_norm(x, math.gcd(8, c_in), norm_in.weight, norm_in.bias))
    h = F.conv2d(h, conv_in.weight, conv_in.bias, padding=1)
    scale, shift = F.linear(F.silu(emb), linear.weight, linear.bias).chunk(2, dim=1)
    norm_out = block.out_norm
    h = F.group_norm(h, math.gcd(8, c_out), norm_out.weight, norm_out.bias)
    h = h * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
    h = F.conv2d(F.silu(h), conv_out.weight, conv_out.bias, padding=1)
    skip = x if c_in == c_out else F.conv2d(x, block.skip.weight, block.skip.bias)
    return skip + h


@pytest.mark.parametrize("c_in, c_out", [(8, 8), (4, 12)])
def test_residual_block_matches_the_functional_scale_shift_block(c_in, c_out):
    block = randomise(ResidualBlock(c_in, c_out, emb_dim=6)).eval()
    x, emb = torch.randn(3, c_in, 5, 5), torch.randn(3, 6)
    torch.testing.assert_close(
        block(x, emb), residual_reference(block, x, emb, c_in, c_out)
    )


def test_residual_block_dropout_acts_in_training_only():
    block = randomise(ResidualBlock(4, 4, emb_dim=3, dropout=0.5))
    x, emb = torch.randn(2, 4, 6, 6), torch.randn(2, 3)
    torch.manual_seed(0)
    first, second = block(x, emb), block(x, emb)
    assert not torch.allclose(first, second)  # a fresh dropout mask per call
    block.eval()
    torch.testing.assert_close(
        block(x, emb), residual_reference(block.eval(), x, emb, 4, 4)
    )


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_resize_conv_up_is_interpolate_then_conv(mode):
    layer = randomise(ResizeConvUp(3, mode=mode))
    x = torch.randn(2, 3, 5, 4)
    align = {"align_corners": False} if mode == "bilinear" else {}
    resized = F.interpolate(x, scale_factor=2, mode=mode, **align)
    expected = F.conv2d(resized, layer.conv.weight, layer.conv.bias, padding=1)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kernel, output_padding", [(None, 1), (3, 1), (4, 0)])
def test_transposed_conv_up_matches_conv_transpose2d(kernel, output_padding):
    layer = (
        TransposedConvUp(3)
        if kernel is None
        else TransposedConvUp(3, kernel=kernel)
    )
    assert layer.conv.weight.shape[-1] == (kernel or 3)  # kernel 3 by default
    x = torch.randn(2, 3, 5, 4)
    w, b = layer.conv.weight, layer.conv.bias
    expected = F.conv_transpose2d(
        x, w, b, stride=2, padding=1, output_padding=output_padding
    )
    assert expected.shape == (2, 3, 10, 8)
    torch.testing.assert_close(layer(x), expected)


def test_icnr_pixel_shuffle_starts_as_nearest_upsampling_and_plain_does_not():
    x = torch.randn(2, 3, 4, 5)
    torch.manual_seed(0)
    icnr = PixelShuffleUp(3, icnr=True)
    y = icnr(x)  # (2, 3, 8, 10)
    # Aitken et al.: each output 2x2 block is one value, as a conv followed by nearest upsampling
    conv = F.conv2d(x, icnr.conv.weight[::4], icnr.conv.bias[::4], padding=1)
    torch.testing.assert_close(
        y, F.interpolate(conv, scale_factor=2, mode="nearest")
    )
    torch.manual_seed(0)
    plain = make_upsampler("pixel shuffle", 3)  # chapter 2's baseline: no ICNR
    y = plain(x)
    assert not torch.allclose(
        y, F.interpolate(y[..., ::2, ::2], scale_factor=2, mode="nearest")
    )


def test_decoder_stages_are_upsampler_conv_group_norm_silu():
    decoder = ConvDecoder(8, widths=(8, 4), image_size=8)
    for stage in decoder.stages:
        kinds = [type(layer) for layer in stage]
        assert kinds[:2] == [ResizeConvUp, nn.Conv2d]
        assert [type(layer) for layer in stage[2]] == [nn.GroupNorm, nn.SiLU]


def test_default_encoder_output_feeds_the_default_decoder():
    encoder, decoder = ConvEncoder(), ConvDecoder()
    assert encoder.head.out_features == decoder.start.in_features == 64
    x = torch.rand(1, 3, 32, 32)
    assert decoder(encoder(x)).shape == x.shape


def test_transformer_mlp_is_four_times_wider_by_default():
    block = TransformerBlock(8, 2)  # d_ff = 4 d_model, Vaswani et al.
    assert block.mlp[0].out_features == 32 and block.mlp[2].in_features == 32


# --- dtypes and devices ------------------------------------------------------------------------------------


def test_sinusoids_stay_float32_under_a_float64_default_dtype():
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        positions = sinusoidal_positions(5, 6)
        times = timestep_embedding(torch.tensor([0, 7]), 6)
    finally:
        torch.set_default_dtype(default)
    assert positions.dtype == times.dtype == torch.float32
    torch.testing.assert_close(positions, sinusoidal_positions(5, 6))


def test_masks_embeddings_and_nulls_are_built_on_the_asked_device():
    meta = torch.device("meta")
    assert causal_mask(4, "meta").device == meta
    assert timestep_embedding(torch.zeros(3, device=meta), 8).device == meta
    assert LabelEmbedding([3, 4], 8).null(2, "meta").device == meta
    assert EmbeddingProjection(5, 8).null(2, "meta").device == meta
    tokens = TokenStates(
        torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool)
    ).to("meta")
    assert tokens.states.device == tokens.mask.device == meta
    layer = MultiHeadAttention(8, 2).to("meta")
    assert layer(torch.randn(2, 3, 8, device=meta), causal=True).shape == (2, 3, 8)


def test_nulls_of_an_empty_batch_and_empty_sequences():
    assert LabelEmbedding([3, 4], 8).null(0).shape == (0, 2)
    assert EmbeddingProjection(5, 8).null(0).shape == (0, 5)
    assert padding_mask(torch.zeros(0, dtype=torch.long)).shape == (0, 1, 1, 0)
    assert padding_mask(torch.tensor([0, 0]), length=0).shape == (2, 1, 1, 0)


def test_learned_positions_accept_sequences_up_to_max_length():
    layer = LearnedPositions(max_length=4, dim=3)
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(layer(x), x + layer.table)
    with pytest.raises(
        ValueError, match=re.escape("x must be (B, L <= 4, 3), got (2, 5, 3)")
    ):
        layer(torch.randn(2, 5, 3))


def test_where_condition_pads_token_states_to_the_longer_sequence():
    wide = TokenStates(torch.ones(2, 2, 8), torch.ones(2, 2, dtype=torch.bool))
    longer = TokenStates(torch.zeros(2, 3, 8), torch.ones(2, 3, dtype=torch.bool))
    mixed = where_condition(torch.tensor([True, False]), wide, longer)
    assert mixed.states.shape == (2, 3, 8)
    assert mixed.mask.tolist() == [[True, True, False], [True, True, True]]


def test_label_tables_and_periods_are_capped():
    assert (
        LabelEmbedding([MAX_CLASSES], 1).tables[0].num_embeddings == MAX_CLASSES + 1
    )
    with pytest.raises(
        ValueError, match=f"every class count must be an int <= {MAX_CLASSES:,}"
    ):
        LabelEmbedding([MAX_CLASSES + 1], 1)
    assert timestep_embedding(torch.tensor([1.0]), 4, max_period=1.5).shape == (
        1,
        4,
    )
    for period in (1.0, 0.5):  # log(period) <= 0: no frequencies below 1
        with pytest.raises(
            ValueError, match=re.escape("max_period must lie in (1, inf)")
        ):
            timestep_embedding(torch.tensor([1.0]), 4, max_period=period)


def test_cat_conditions_takes_vectors_and_token_tensors_only():
    tokens = torch.randn(2, 3, 4)
    assert cat_conditions([tokens, tokens]).shape == (4, 3, 4)
    for bad in (torch.randn(2), torch.randn(2, 3, 4, 5)):
        with pytest.raises(
            ValueError,
            match=re.escape("every condition must be a 2 or 3-d tensor (B, ...)"),
        ):
            cat_conditions([bad, bad])


def test_make_upsampler_rejects_unknown_names_with_the_valid_ones():
    with pytest.raises(
        ValueError,
        match="unknown upsampler 'bilinear'; valid names: transposed k3s2, transposed k4s2, ",
    ):
        make_upsampler("bilinear", 4)


# --- error messages name the argument and the expected layout ------------------------------------------------

Q = torch.randn(2, 2, 3, 4)
TOKENS = TokenStates(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
FLOAT2 = torch.randn(2, 3)
LONG2 = torch.ones(2, 3, dtype=torch.long)

CASES = [
    # attention and masks
    (
        lambda: attention(Q[0], Q, Q),
        ValueError,
        "q must be a 4-d tensor (B, heads, Lq, d), got shape (2, 3, 4)",
    ),
    (
        lambda: attention(Q, Q[0], Q),
        ValueError,
        "k must be a 4-d tensor (B, heads, Lk, d), got shape",
    ),
    (
        lambda: attention(Q, Q, Q[0]),
        ValueError,
        "v must be a 4-d tensor (B, heads, Lk, d_v), got shape",
    ),
    (
        lambda: attention(Q, Q[:, :1], Q),
        ValueError,
        "q, k, v must have shapes (B, heads, Lq, d), (B, heads, Lk, d) and (B, heads, Lk, d_v), got",
    ),
    (
        lambda: attention(Q, Q, Q, [[True]]),
        TypeError,
        "mask must be a torch.Tensor broadcastable to (B, heads, Lq, Lk)",
    ),
    (
        lambda: attention(Q, Q, Q, torch.ones(3, 3)),
        TypeError,
        "mask must be a bool tensor (True = may attend), got torch.float32; for 0/1 values use mask.bool()",
    ),
    (
        lambda: combine_masks([True]),
        TypeError,
        "masks[0] must be a torch.Tensor of bools",
    ),
    (
        lambda: combine_masks(torch.ones(2, dtype=torch.bool), torch.ones(2)),
        TypeError,
        "masks[1] must be a bool tensor (True = may attend), got torch.float32",
    ),
    (
        lambda: combine_masks(
            torch.ones(2, 3, dtype=torch.bool), torch.ones(4, dtype=torch.bool)
        ),
        ValueError,
        "masks of shapes (2, 3), (4,) do not broadcast together",
    ),
    (
        lambda: padding_mask([2, 3]),
        TypeError,
        "valid must be a torch.Tensor (B, Lk) bool or (B,) lengths",
    ),
    (
        lambda: padding_mask(torch.ones(3, dtype=torch.bool)),
        ValueError,
        "a bool padding mask must be (B, Lk) and comes without length, got shape (3,) and length None",
    ),
    (
        lambda: padding_mask(torch.tensor([1.0])),
        TypeError,
        "valid must be (B, Lk) bools or (B,) integer lengths, got a torch.float32 tensor of shape (1,)",
    ),
    (
        lambda: padding_mask(torch.tensor([1]), length=-1),
        ValueError,
        "length must be an int >= 0, got -1",
    ),
    (lambda: causal_mask("3"), TypeError, "length must be an int"),
    (
        lambda: MultiHeadAttention(8, 2)(LONG2[..., None].expand(2, 3, 8)),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        lambda: MultiHeadAttention(8, 2)(FLOAT2),
        ValueError,
        "x must be a 3-d tensor (B, L, 8)",
    ),
    (
        lambda: MultiHeadAttention(8, 2, 6)(torch.randn(2, 3, 8)),
        ValueError,
        "this MultiHeadAttention attends to a context of 6 features: pass context (B, Lk, context_dim)",
    ),
    (
        lambda: MultiHeadAttention(8, 2, 6)(
            torch.randn(2, 3, 8), torch.randn(2, 4, 6), causal=True
        ),
        ValueError,
        "causal=True applies to self-attention only (context=None): a context has no order relative to the queries",
    ),
    (
        lambda: MultiHeadAttention(8, 2)(
            torch.randn(2, 3, 8), key_mask=torch.ones(3, dtype=torch.bool)
        ),
        ValueError,
        "key_mask must be a 2-d tensor (B, Lk)",
    ),
    (
        lambda: SelfAttention2d(8, 2)(torch.randn(2, 8, 3)),
        ValueError,
        "x must be a 4-d tensor (B, 8, H, W)",
    ),
    (
        lambda: CrossAttention2d(8, 4, 2)(torch.randn(1, 8, 2, 2), None),
        ValueError,
        "CrossAttention2d needs a context (B, Lk, context_dim), got None",
    ),
    # embeddings and conditions
    (
        lambda: timestep_embedding(FLOAT2, 4),
        ValueError,
        "t must be a 1-d tensor (B,) of timesteps",
    ),
    (
        lambda: timestep_embedding(torch.ones(2), 5),
        ValueError,
        "dim must be even (half cosines, half sines), got 5",
    ),
    (lambda: sinusoidal_positions("4", 4), TypeError, "length must be an int"),
    (lambda: TimestepEmbedding(3.0, 4), TypeError, "dim must be an int"),
    (lambda: TimestepEmbedding(4, 0), ValueError, "emb_dim must be an int >= 1"),
    (lambda: LearnedPositions(0, 4), ValueError, "max_length must be an int >= 1"),
    (lambda: LearnedPositions(4, 0), ValueError, "dim must be an int >= 1"),
    (
        lambda: LearnedPositions(4, 3)(FLOAT2),
        ValueError,
        "x must be a 3-d tensor (B, L, dim)",
    ),
    (
        lambda: LearnedPositions(4, 3)(LONG2[..., None]),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        lambda: TokenStates(FLOAT2, LONG2.bool()),
        ValueError,
        "states must be a 3-d tensor (B, L, D)",
    ),
    (
        lambda: TokenStates(LONG2[..., None], LONG2.bool()),
        TypeError,
        "states must be a floating-point tensor",
    ),
    (
        lambda: TokenStates(
            torch.randn(2, 3, 4), torch.ones(2, 3, 1, dtype=torch.bool)
        ),
        ValueError,
        "mask must be a 2-d tensor (B, L)",
    ),
    (
        lambda: where_condition(torch.ones(2, 1, dtype=torch.bool), FLOAT2, FLOAT2),
        ValueError,
        "choose must be a 1-d tensor (B,) bool",
    ),
    (
        lambda: where_condition(
            torch.ones(2, dtype=torch.bool), torch.ones(3, 3), FLOAT2
        ),
        ValueError,
        "if_true must hold one row per entry of choose: 2, got a torch.float32 tensor of shape (3, 3)",
    ),
    (
        lambda: where_condition(
            torch.ones(2, dtype=torch.bool), FLOAT2, torch.tensor(0.0)
        ),
        ValueError,
        "if_false must hold one row per entry of choose: 2, got a torch.float32 tensor of shape ()",
    ),
    (
        lambda: cat_conditions(FLOAT2),
        TypeError,
        "conditions must be a non-empty list, got a torch.float32 tensor of shape (2, 3)",
    ),
    (
        lambda: LabelEmbedding([0], 4),
        ValueError,
        "every entry of class_counts must be an int >= 1, got 0",
    ),
    (
        lambda: LabelEmbedding(3, 4),
        TypeError,
        "class_counts must be a sequence of ints",
    ),
    (lambda: LabelEmbedding([3], 0), ValueError, "dim must be an int >= 1"),
    (
        lambda: LabelEmbedding([3], 4).null(-1),
        ValueError,
        "batch must be an int >= 0, got -1",
    ),
    (
        lambda: LabelEmbedding([3], 4)(FLOAT2, LONG2[0]),
        ValueError,
        "labels must be a 2-d tensor (B, 1) of class indices",
    ),
    (
        lambda: LabelEmbedding([3, 2], 4)(
            torch.randn(3, 4), torch.tensor([[3, 1], [4, -1], [2, 2]])
        ),
        ValueError,
        "labels[:, k] must lie in [0, class_counts[k]] for class_counts [3, 2] (class_counts[k] is NULL), "
        "got column minima [2, -1] and maxima [4, 2]",
    ),
    (
        lambda: LabelEmbedding([3], 4)(FLOAT2[0], LONG2[:, :1]),
        ValueError,
        "emb must be a 2-d tensor (B, 4)",
    ),
    (
        lambda: LabelEmbedding([3], 3)(LONG2, LONG2[:, :1]),
        TypeError,
        "emb must be a floating-point tensor",
    ),
    (lambda: EmbeddingProjection(0, 4), ValueError, "cond_dim must be an int >= 1"),
    (lambda: EmbeddingProjection(3, 0), ValueError, "dim must be an int >= 1"),
    (
        lambda: EmbeddingProjection(3, 4).null(-1),
        ValueError,
        "batch must be an int >= 0, got -1",
    ),
    (
        lambda: EmbeddingProjection(3, 4)(FLOAT2, FLOAT2[0]),
        ValueError,
        "cond must be a 2-d tensor (B, cond_dim)",
    ),
    (
        lambda: EmbeddingProjection(3, 4)(FLOAT2, LONG2),
        TypeError,
        "cond must be a floating-point tensor",
    ),
    # layers, blocks, encoder and decoder
    (lambda: zero_init("conv"), TypeError, "module must be an nn.Module"),
    (lambda: ResidualBlock(0, 4, 2), ValueError, "c_in must be an int >= 1"),
    (
        lambda: ResidualBlock(4, 4, 2)(torch.randn(4, 3, 3), FLOAT2),
        ValueError,
        "x must be a 4-d tensor (B, 4, H, W)",
    ),
    (
        lambda: ResidualBlock(4, 4, 3)(torch.randn(2, 4, 3, 3), FLOAT2[0]),
        ValueError,
        "emb must be a 2-d tensor (B, 3)",
    ),
    (
        lambda: ResidualBlock(4, 4, 3)(torch.randn(2, 4, 3, 3), LONG2),
        TypeError,
        "emb must be a floating-point tensor",
    ),
    (
        lambda: TransformerBlock(8, 2)(FLOAT2),
        ValueError,
        "x must be a 3-d tensor (B, L, 8)",
    ),
    (
        lambda: TransformerBlock(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 3, 8)),
        ValueError,
        "this TransformerBlock has no cross-attention (context_dim=None): it takes no context or context_mask",
    ),
    (
        lambda: TransformerBlock(8, 2, context_dim=5)(torch.randn(2, 3, 8)),
        ValueError,
        "this TransformerBlock cross-attends (context_dim=5): pass context (B, Lk, context_dim)",
    ),
    (
        lambda: TransformerBlock(8, 2, mlp_ratio=0.01),
        ValueError,
        "mlp_ratio * dim (the MLP's hidden width) must be an int >= 1",
    ),
    (
        lambda: ConvEncoder(widths=(4,), image_size=8)(FLOAT2),
        ValueError,
        "x must be a 4-d tensor (B, 3, 8, 8)",
    ),
    (
        lambda: ConvDecoder(5, widths=(4,), image_size=8)(FLOAT2[0]),
        ValueError,
        "z must be a 2-d tensor (B, 5)",
    ),
    (
        lambda: ConvDecoder(widths=[]),
        ValueError,
        "widths must hold at least one int",
    ),
    (
        lambda: ResizeConvUp(3)(torch.ones(1, 3, 2, 2, dtype=torch.long)),
        TypeError,
        "x must be a floating-point tensor",
    ),
    (
        lambda: ResizeConvUp(3)(FLOAT2),
        ValueError,
        "x must be a 4-d tensor (B, 3, H, W)",
    ),
    (
        lambda: timestep_embedding(torch.tensor([0.0, math.nan]), 4),
        ValueError,
        "t holds 1 NaN or infinite values",
    ),
]


@pytest.mark.parametrize("call, error, message", CASES)
def test_errors_name_the_argument_and_the_expected_layout(call, error, message):
    with pytest.raises(error, match="^" + re.escape(message)):
        call()
