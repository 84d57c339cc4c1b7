"""Tests for minigen.nn.transformer's GEGLU and SpatialTransformer, and the UNet's text mode: the layer
against its whole forward written out from torch.nn.functional operations and its own parameters (the
cross-attention through F.scaled_dot_product_attention with a mask built from TokenStates.mask), the
padding tokens' lack of influence (in the layer and through a whole text UNet), the identity of a fresh
layer, GEGLU against its formula, and the checks of bad inputs."""

import pytest
import torch
import torch.nn.functional as F

from minigen.models.unet import UNet
from minigen.nn.attention import MultiHeadAttention
from minigen.nn.embeddings import TokenStates
from minigen.nn.transformer import GEGLU, SpatialTransformer

pytestmark = pytest.mark.usefixtures(
    "one_thread"
)  # conftest's: tiny tensors, one thread


def randomise(module: torch.nn.Module, std: float = 0.3) -> None:
    """Random values for every parameter (norm scales and shifts, proj_out included)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, std)


def text(batch=2, length=5, dim=6, lengths=(5, 2), dtype=torch.float64, seed=0):
    """TokenStates whose row b has lengths[b] real tokens, then padding."""
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, length, dim, generator=generator, dtype=dtype)
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return TokenStates(states, mask)


def reference_attention(layer: MultiHeadAttention, x, context, mask):
    """Multi-head attention from F.linear and F.scaled_dot_product_attention with `layer`'s weights."""

    def split(z):  # (B, L, dim) -> (B, heads, L, d)
        return z.unflatten(-1, (layer.heads, -1)).transpose(1, 2)

    q = split(F.linear(x, layer.to_q.weight, layer.to_q.bias))
    k = split(F.linear(context, layer.to_k.weight, layer.to_k.bias))
    v = split(F.linear(context, layer.to_v.weight, layer.to_v.bias))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return F.linear(
        out.transpose(1, 2).flatten(2), layer.to_out.weight, layer.to_out.bias
    )


def reference_geglu(layer: GEGLU, x):
    """project_out(a * gelu(gate)), (a, gate) the two halves of project_in(x)."""
    hidden = layer.project_out.in_features
    both = F.linear(x, layer.project_in.weight, layer.project_in.bias)
    a, gate = both[..., :hidden], both[..., hidden:]
    return F.linear(
        a * F.gelu(gate), layer.project_out.weight, layer.project_out.bias
    )


def reference_spatial(
    layer: SpatialTransformer, x, tokens: TokenStates, cross=None
):
    """GroupNorm -> proj_in -> +self-attn(LN) -> +cross-attn(LN, states, mask) -> +GEGLU(LN) -> proj_out
    -> + x. cross: replaces the cross-attention term when given (a function of its input)."""
    batch, channels, height, width = x.shape

    def ln(norm, z):
        return F.layer_norm(z, (channels,), norm.weight, norm.bias, norm.eps)

    norm = layer.norm
    h = F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps)
    h = F.conv2d(h, layer.proj_in.weight, layer.proj_in.bias)
    h = h.flatten(2).transpose(1, 2)  # (B, HW, C), position index y * W + x
    s = ln(layer.self_norm, h)
    h = h + reference_attention(layer.self_attention, s, s, None)
    c = ln(layer.cross_norm, h)
    if cross is None:
        mask = tokens.mask[:, None, None, :]  # (B, 1, 1, Lk): each head, each query
        h = h + reference_attention(layer.cross_attention, c, tokens.states, mask)
    else:
        h = h + cross(c)
    h = h + reference_geglu(layer.feed_forward, ln(layer.feed_forward_norm, h))
    h = h.transpose(1, 2).reshape(batch, channels, height, width)
    return x + F.conv2d(h, layer.proj_out.weight, layer.proj_out.bias)


def random_layer(channels=8, context_dim=6, heads=2, seed=0):
    torch.manual_seed(seed)
    layer = SpatialTransformer(channels, context_dim, heads).double()
    randomise(layer)  # proj_out no longer zero: the output is not x
    return layer


# ----------------------------------------------------------------------------------
# SpatialTransformer


@pytest.mark.parametrize(
    "channels, heads, side", [(8, 2, 3), (16, 4, 2), (8, 1, 4)]
)
def test_spatial_transformer_matches_its_forward_written_out(channels, heads, side):
    layer = random_layer(channels, 6, heads, seed=channels + heads)
    x = torch.randn(2, channels, side, side + 1, dtype=torch.float64) * 2 + 0.5
    tokens = text()
    out = layer(x, tokens)
    expected = reference_spatial(layer, x, tokens)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    assert (out - x).abs().max() > 1e-2  # the layer did something


def test_cross_attention_really_reads_the_mask():
    """The reference with the mask ignored differs: the check above sees a layer that attends to padding."""
    layer = random_layer()
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    tokens = text(lengths=(5, 2))
    unmasked = TokenStates(tokens.states, torch.ones_like(tokens.mask))
    out = layer(x, tokens)
    assert not torch.allclose(out, reference_spatial(layer, x, unmasked), atol=1e-4)
    torch.testing.assert_close(
        out[:1], reference_spatial(layer, x, unmasked)[:1]
    )  # row 0 unpadded


def test_a_text_of_padding_only_adds_the_output_bias_of_the_cross_attention():
    """No real token: the attention weights are 0, the cross-attention term is to_out's bias alone."""
    layer = random_layer()
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    tokens = text(lengths=(0, 3))
    out = layer(x, tokens)
    bias = layer.cross_attention.to_out.bias
    expected = reference_spatial(
        layer, x[:1], tokens[0], cross=lambda c: bias.expand_as(c)
    )
    torch.testing.assert_close(out[:1], expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out[1:], reference_spatial(layer, x[1:], tokens[1]))


def test_padding_tokens_have_no_influence_while_real_tokens_do():
    layer = random_layer()
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    tokens = text(lengths=(4, 2))
    out = layer(x, tokens)
    # change every padded state (and add more padding): the output stays
    noise = torch.randn_like(tokens.states) * 10
    changed = torch.where(tokens.mask[..., None], tokens.states, noise)
    assert not torch.equal(changed, tokens.states)
    torch.testing.assert_close(
        layer(x, TokenStates(changed, tokens.mask)), out, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(layer(x, tokens.pad_to(9)), out, rtol=0, atol=1e-12)
    # change one real token of row 1: row 1 changes, row 0 does not
    real = tokens.states.clone()
    real[1, 1] += 1.0
    moved = layer(x, TokenStates(real, tokens.mask))
    assert (moved[1] - out[1]).abs().max() > 1e-4
    torch.testing.assert_close(moved[0], out[0], rtol=0, atol=1e-12)


def test_a_fresh_spatial_transformer_is_the_identity():
    torch.manual_seed(0)
    layer = SpatialTransformer(8, 6, heads=2)
    assert torch.count_nonzero(layer.proj_out.weight) == 0
    assert torch.count_nonzero(layer.proj_out.bias) == 0
    x = torch.randn(2, 8, 4, 4)
    tokens = text(dtype=torch.float32)
    assert torch.equal(layer(x, tokens), x)


def test_spatial_transformer_gradients_reach_the_text_states():
    layer = random_layer()
    x = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    tokens = text(lengths=(5, 2))
    states = tokens.states.clone().requires_grad_(True)
    layer(x, TokenStates(states, tokens.mask)).square().sum().backward()
    assert (states.grad[tokens.mask].abs().sum(-1) > 0).all()  # every real token
    assert torch.count_nonzero(states.grad[~tokens.mask]) == 0  # no padding token


def test_spatial_transformer_rejects_bad_inputs():
    layer = SpatialTransformer(8, 6, heads=2)
    x, tokens = torch.randn(2, 8, 3, 3), text(dtype=torch.float32)
    with pytest.raises(TypeError, match="TokenStates"):
        layer(x, tokens.states)
    with pytest.raises(ValueError):
        layer(torch.randn(2, 4, 3, 3), tokens)  # 4 channels, not 8
    with pytest.raises(ValueError):
        layer(torch.randn(8, 3, 3), tokens)  # no batch axis
    with pytest.raises(ValueError):
        layer(x, text(dim=5, dtype=torch.float32))  # states of the wrong width
    with pytest.raises(ValueError):
        layer(x[:1], tokens)  # 1 image, 2 texts
    with pytest.raises(ValueError):
        SpatialTransformer(8, 6, heads=3)  # 8 channels do not split into 3 heads
    with pytest.raises(ValueError):
        SpatialTransformer(0, 6)
    with pytest.raises(TypeError):
        SpatialTransformer(8, 6.0)


# ----------------------------------------------------------------------------------
# GEGLU


@pytest.mark.parametrize("dim, ratio", [(6, 4), (8, 2), (5, 1.5)])
def test_geglu_matches_its_formula(dim, ratio):
    torch.manual_seed(dim)
    layer = GEGLU(dim, ratio).double()
    randomise(layer, std=0.7)
    hidden = round(ratio * dim)
    assert layer.project_in.out_features == 2 * hidden
    assert layer.project_out.in_features == hidden
    x = torch.randn(3, 4, dim, dtype=torch.float64)
    out = layer(x)
    torch.testing.assert_close(
        out, reference_geglu(layer, x), rtol=1e-12, atol=1e-12
    )
    # the two halves swapped (gate * gelu(a)) is another function: the check above would see it
    both = F.linear(x, layer.project_in.weight, layer.project_in.bias)
    a, gate = both[..., :hidden], both[..., hidden:]
    swapped = F.linear(
        gate * F.gelu(a), layer.project_out.weight, layer.project_out.bias
    )
    assert (swapped - out).abs().max() > 1e-2
    # nor is it an ungated MLP, project_out(gelu(a))
    ungated = F.linear(F.gelu(a), layer.project_out.weight, layer.project_out.bias)
    assert (ungated - out).abs().max() > 1e-2


def test_geglu_gate_closes_with_very_negative_gate():
    """gelu(gate) -> 0 as gate -> -inf: with the gate half's bias at -50 the output is project_out's bias."""
    torch.manual_seed(0)
    layer = GEGLU(4, 2).double()
    with torch.no_grad():
        layer.project_in.weight[8:].zero_()  # the gate half reads nothing
        layer.project_in.bias[8:].fill_(-50.0)
    x = torch.randn(5, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), layer.project_out.bias.expand(5, 4))
    with torch.no_grad():
        layer.project_in.bias[8:].fill_(50.0)  # gate wide open: gelu(50) = 50
    a = F.linear(x, layer.project_in.weight[:8], layer.project_in.bias[:8])
    expected = F.linear(50.0 * a, layer.project_out.weight, layer.project_out.bias)
    torch.testing.assert_close(layer(x), expected)


def test_geglu_rejects_bad_sizes():
    with pytest.raises(ValueError):
        GEGLU(0)
    with pytest.raises(ValueError):
        GEGLU(4, mlp_ratio=0)
    with pytest.raises(TypeError):
        GEGLU(4.0)


# ----------------------------------------------------------------------------------
# The UNet reading text


def text_unet(text_dim=6, seed=0):
    torch.manual_seed(seed)
    return UNet(
        in_channels=4,
        base_channels=8,
        channel_mults=(1, 2),
        attention_levels=(0, 1),
        image_size=8,
        heads=2,
        text_dim=text_dim,
    )


def give_proj_out_weights(model: torch.nn.Module) -> int:
    """N(0, 0.3^2) for every parameter under a module named proj_out, and for the zero output layer."""
    count = 0
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "proj_out" in name or name.startswith("out."):
                torch.nn.init.normal_(parameter, std=0.3)
                count += "proj_out" in name
    return count


def test_a_text_unet_has_a_spatial_transformer_at_every_attention_layer():
    model = text_unet()
    layers = [m for m in model.modules() if isinstance(m, SpatialTransformer)]
    # two levels, one block each, down and up (blocks_per_level + 1 going up), and the middle
    assert len(layers) == 2 * 1 + 2 * 2 + 1
    assert all(layer.context_dim == 6 for layer in layers)
    assert model.text_dim == 6


def test_a_fresh_text_unet_ignores_the_text():
    """Every SpatialTransformer starts as the identity: any text gives the same output."""
    model = text_unet()
    with torch.no_grad():
        torch.nn.init.normal_(model.out[-1].weight, std=0.3)
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 700])
    a = model(x, t, text(dtype=torch.float32, seed=1))
    b = model(x, t, text(length=3, lengths=(1, 3), dtype=torch.float32, seed=2))
    assert a.abs().max() > 1e-3
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_padding_tokens_have_no_influence_through_the_whole_unet():
    model = text_unet()
    assert give_proj_out_weights(model) == 2 * 7  # weight and bias of 7 layers
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    tokens = text(lengths=(3, 5), dtype=torch.float32)
    with torch.no_grad():
        out = model(x, t, tokens)
        noise = torch.randn_like(tokens.states) * 5
        changed = TokenStates(
            torch.where(tokens.mask[..., None], tokens.states, noise), tokens.mask
        )
        torch.testing.assert_close(model(x, t, changed), out, rtol=0, atol=1e-6)
        # more padding: the sums run over more (zero-weight) keys, float32 rounding only
        torch.testing.assert_close(
            model(x, t, tokens.pad_to(8)), out, rtol=0, atol=1e-5
        )
        real = tokens.states.clone()
        real[0, 2] += 1.0  # the last real token of row 0
        moved = model(x, t, TokenStates(real, tokens.mask))
    assert (moved[0] - out[0]).abs().max() > 1e-4
    torch.testing.assert_close(moved[1], out[1], rtol=0, atol=1e-6)


def test_text_unet_cond_must_be_token_states_of_its_width():
    model = text_unet()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    tokens = text(dtype=torch.float32)
    assert model(x, t, tokens).shape == x.shape
    with pytest.raises(TypeError, match="TokenStates"):
        model(x, t, tokens.states)  # a plain tensor
    with pytest.raises(TypeError, match="TokenStates"):
        model(x, t, None)  # no NULL of its own: the text encoder's empty caption is
    with pytest.raises(TypeError, match="TokenStates"):
        model(x, t)
    with pytest.raises(ValueError):
        model(x, t, text(dim=5, dtype=torch.float32))  # states 5 wide, not 6
    with pytest.raises(ValueError):
        model(x, t, tokens[0])  # one text for two images
    with pytest.raises(ValueError, match="text"):
        model.null_cond(2)


def test_text_dim_excludes_the_other_conditions():
    with pytest.raises(ValueError):
        UNet(
            4,
            8,
            (1, 2),
            attention_levels=(0, 1),
            image_size=8,
            text_dim=6,
            class_counts=[3],
        )
    with pytest.raises(ValueError):
        UNet(
            4,
            8,
            (1, 2),
            attention_levels=(0, 1),
            image_size=8,
            text_dim=6,
            cond_dim=5,
        )
    with pytest.raises(ValueError):
        UNet(4, 8, (1, 2), attention_levels=(0, 1), image_size=8, text_dim=0)
    with pytest.raises(TypeError):
        UNet(4, 8, (1, 2), attention_levels=(0, 1), image_size=8, text_dim=6.0)
