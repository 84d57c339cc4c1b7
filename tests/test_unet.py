"""Tests for the U-Net and its embeddings: timestep and position embeddings against their closed forms, the
condition embeddings and their NULL, conditions of every kind batched and mixed, the zero-initialised residual
paths, attention against PyTorch's reference, the U-Net's shapes, skips, block names, gradients, conditioning
and input checks."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minigen.models.unet import UNet, with_coordinates
from minigen.nn.attention import SelfAttention2d
from minigen.nn.embeddings import (
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
from minigen.nn.residual import ResidualBlock

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_zero_parameters(module: torch.nn.Module, std: float = 0.1) -> None:
    """Give every all-zero parameter (the zero-initialised convolutions, the GroupNorm shifts) random values."""
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0, std)


def small_unet(**kwargs) -> UNet:
    config = dict(
        base_channels=16,
        channel_mults=(1, 2),
        attention_levels=(1,),
        image_size=8,
        heads=2,
    )
    return UNet(**{**config, **kwargs})


# --- timestep_embedding -------------------------------------------------------------------------------------


def test_timestep_embedding_matches_closed_form():
    t, dim, period = [0, 1, 7, 250, 999], 10, 10_000.0
    half = dim // 2
    expected = [
        [math.cos(step * period ** (-i / half)) for i in range(half)]
        + [math.sin(step * period ** (-i / half)) for i in range(half)]
        for step in t
    ]
    embedding = timestep_embedding(torch.tensor(t), dim)
    assert embedding.shape == (len(t), dim) and embedding.dtype == torch.float32
    torch.testing.assert_close(embedding, torch.tensor(expected), atol=2e-4, rtol=0)


def test_timestep_embedding_float_times_and_custom_period():
    t = torch.tensor([0.5, 2.25], dtype=torch.float64)
    expected = [
        [math.cos(step * 100.0 ** (-i / 2)) for i in range(2)]
        + [math.sin(step * 100.0 ** (-i / 2)) for i in range(2)]
        for step in t.tolist()
    ]
    torch.testing.assert_close(
        timestep_embedding(t, 4, max_period=100.0),
        torch.tensor(expected),
        atol=1e-6,
        rtol=0,
    )


def test_timestep_embedding_separates_timesteps():
    embedding = timestep_embedding(torch.arange(50), 16)
    distances = torch.cdist(embedding, embedding) + torch.eye(
        50
    )  # the diagonal is each step with itself
    assert distances.min() > 1e-3


@pytest.mark.parametrize("dim", [7, 0])
def test_timestep_embedding_rejects_bad_dim(dim):
    with pytest.raises(ValueError):
        timestep_embedding(torch.arange(3), dim)


def test_timestep_embedding_rejects_non_vector_t():
    with pytest.raises(ValueError, match="1-d"):
        timestep_embedding(torch.zeros(2, 3), 8)


def test_timestep_embedding_module_is_the_mlp_of_the_sinusoid():
    torch.manual_seed(0)
    module = TimestepEmbedding(8, 12)
    t = torch.tensor([0, 3, 999])
    first, second = module.mlp[0], module.mlp[2]
    expected = second(F.silu(first(timestep_embedding(t, 8))))
    torch.testing.assert_close(module(t), expected, atol=0, rtol=0)
    with pytest.raises(ValueError, match="even"):
        TimestepEmbedding(7, 12)


def test_timestep_embedding_rejects_bad_types():
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        timestep_embedding([1, 2], 8)
    with pytest.raises(TypeError, match="integer or real"):
        timestep_embedding(torch.tensor([True]), 8)
    with pytest.raises(TypeError, match="dim must be an int"):
        timestep_embedding(torch.arange(3), 8.0)
    with pytest.raises(ValueError, match="max_period"):
        timestep_embedding(torch.arange(3), 8, max_period=float("nan"))


# --- positions ----------------------------------------------------------------------------------------------


def test_sinusoidal_positions_match_vaswani_et_al():
    length, dim = 7, 6
    expected = [
        [
            math.sin(p / 10_000 ** (i / dim))
            if i % 2 == 0
            else math.cos(p / 10_000 ** ((i - 1) / dim))
            for i in range(dim)
        ]
        for p in range(length)
    ]
    got = sinusoidal_positions(length, dim)
    assert got.shape == (length, dim) and got.dtype == torch.float32
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-6, rtol=0)
    # the property the paper chose it for: PE[p + k] is a fixed rotation of PE[p], the same for every p
    pe = sinusoidal_positions(40, 8).double()
    pairs = pe.view(40, 4, 2)  # (sin, cos) of one frequency
    angle = torch.atan2(pairs[..., 0], pairs[..., 1])  # p w_i

    def turn(a):
        return torch.remainder(a, 2 * math.pi)

    torch.testing.assert_close(
        turn(angle[13] - angle[10]), turn(angle[33] - angle[30]), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("length, dim", [(0, 4), (3, 5), (3, 0)])
def test_sinusoidal_positions_reject_bad_sizes(length, dim):
    with pytest.raises(ValueError):
        sinusoidal_positions(length, dim)


def test_learned_positions_add_one_vector_per_position():
    torch.manual_seed(0)
    positions = LearnedPositions(5, 4)
    assert positions.table.shape == (5, 4) and 0.002 < positions.table.std() < 0.03
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(
        positions(x), x + positions.table[:3][None], atol=0, rtol=0
    )
    positions(x).sum().backward()
    assert (
        positions.table.grad[:3].eq(2).all()
        and positions.table.grad[3:].eq(0).all()
    )  # two rows of x each
    with pytest.raises(ValueError, match=r"L <= 5"):
        positions(torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"L <= 5, 4"):
        positions(torch.randn(2, 3, 5))


# --- condition embeddings and their NULL ---------------------------------------------------------------------


def test_label_embedding_adds_one_row_per_attribute_and_has_null_rows():
    torch.manual_seed(0)
    embedding = LabelEmbedding((3, 2), 4)
    assert [table.num_embeddings for table in embedding.tables] == [
        4,
        3,
    ]  # one NULL row each
    labels, base = torch.tensor([[0, 1], [2, 0], [3, 2]]), torch.randn(3, 4)
    expected = base + torch.stack(
        [
            embedding.tables[0].weight[a] + embedding.tables[1].weight[b]
            for a, b in labels.tolist()
        ]
    )
    torch.testing.assert_close(embedding(base, labels), expected)
    null = embedding.null(2)
    assert null.dtype == torch.long and null.tolist() == [[3, 2], [3, 2]]
    torch.testing.assert_close(
        embedding(base[:2], null),
        base[:2] + embedding.tables[0].weight[3] + embedding.tables[1].weight[2],
    )


@pytest.mark.parametrize(
    "labels, error",
    [
        (
            [[0, 3], [1, 1]],
            ValueError,
        ),  # 3 > 2, past the NULL index of the second attribute
        ([[-1, 0], [1, 1]], ValueError),
        ([[0], [1]], ValueError),  # one column for two attributes
        ([[0.0, 1.0], [1.0, 1.0]], TypeError),
        ([[True, False], [True, True]], TypeError),
    ],
)
def test_label_embedding_rejects_bad_labels(labels, error):
    with pytest.raises(error, match="labels"):
        LabelEmbedding((3, 2), 4)(torch.zeros(2, 4), torch.tensor(labels))


def test_embedding_projection_adds_a_linear_map_and_learns_its_null_vector():
    torch.manual_seed(0)
    projection = EmbeddingProjection(5, 3)
    cond, base = torch.randn(2, 5), torch.randn(2, 3)
    expected = (
        base + cond @ projection.projection.weight.T + projection.projection.bias
    )
    torch.testing.assert_close(projection(base, cond), expected)
    null = projection.null(2)
    assert null.shape == (2, 5) and torch.equal(
        null, torch.zeros(2, 5)
    )  # DALL-E 2's zero embedding at first
    projection(base, null).sum().backward()
    assert projection.null_vector.grad.abs().amax() > 0  # ...which training moves
    torch.testing.assert_close(
        projection.null_vector.grad, 2 * projection.projection.weight.sum(0)
    )
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        projection(base, torch.randn(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        projection(base, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"emb must be \(2, 3\)"):
        projection(torch.randn(3, 3), cond)


def test_token_states_pad_index_and_move():
    states = TokenStates(
        torch.randn(3, 2, 4),
        torch.tensor([[True, False], [True, True], [False, False]]),
    )
    assert len(states) == 3
    padded = states.pad_to(5)
    assert padded.states.shape == (3, 5, 4) and torch.equal(
        padded.states[:, :2], states.states
    )
    assert (
        torch.equal(padded.states[:, 2:], torch.zeros(3, 3, 4))
        and not padded.mask[:, 2:].any()
    )
    assert torch.equal(states[1:].mask, states.mask[1:]) and torch.equal(
        states[1].states, states.states[1:2]
    )
    assert states.to("cpu").states is states.states
    with pytest.raises(TypeError, match="bool"):
        TokenStates(torch.randn(3, 2, 4), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"mask must be \(B, L\) = \(3, 2\)"):
        TokenStates(torch.randn(3, 2, 4), torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="length must be an int >= 2"):
        states.pad_to(1)


def test_conditions_of_every_kind_batch_and_mix():
    labels_a, labels_b = torch.tensor([[0, 1]]), torch.tensor([[2, 3], [4, 5]])
    assert torch.equal(
        cat_conditions([labels_a, labels_b]), torch.tensor([[0, 1], [2, 3], [4, 5]])
    )
    short = TokenStates(torch.ones(1, 1, 2), torch.ones(1, 1, dtype=torch.bool))
    long = TokenStates(
        2 * torch.ones(2, 3, 2),
        torch.tensor([[True, True, False], [True, True, True]]),
    )
    both = cat_conditions([short, long])
    assert both.states.shape == (3, 3, 2)
    assert both.mask.tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert torch.equal(both.states[0, 0], torch.ones(2)) and torch.equal(
        both.states[0, 1:], torch.zeros(2, 2)
    )
    choose = torch.tensor([True, False])
    null, cond = torch.zeros(2, 3), torch.ones(2, 3)
    assert where_condition(choose, null, cond).tolist() == [[0.0] * 3, [1.0] * 3]
    null_tokens = TokenStates(
        torch.zeros(2, 1, 2), torch.ones(2, 1, dtype=torch.bool)
    )
    mixed = where_condition(choose, null_tokens, long)
    assert mixed.mask.tolist() == [[True, False, False], [True, True, True]]
    assert torch.equal(mixed.states[0], torch.zeros(3, 2)) and torch.equal(
        mixed.states[1], long.states[1]
    )
    with pytest.raises(TypeError, match="if_false must be a Tensor"):
        where_condition(choose, null, long)
    with pytest.raises(TypeError, match="bool"):
        where_condition(choose.float(), null, cond)
    with pytest.raises(ValueError, match="one row per entry of choose"):
        where_condition(choose, null, torch.ones(3, 3))
    with pytest.raises(TypeError, match="non-empty list"):
        cat_conditions([])


# --- ResidualBlock ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("c_in, c_out", [(8, 8), (8, 16), (6, 4)])
def test_residual_block_starts_as_its_skip_path(c_in, c_out):
    torch.manual_seed(0)
    block = ResidualBlock(c_in, c_out, emb_dim=12)
    x, emb = torch.randn(2, c_in, 5, 5), torch.randn(2, 12)
    out = block(x, emb)
    assert out.shape == (2, c_out, 5, 5)
    skip = x if c_in == c_out else block.skip(x)
    assert torch.equal(out, skip)
    randomise_zero_parameters(block)
    assert not torch.allclose(block(x, emb), skip)


@pytest.mark.parametrize("c_in, c_out", [(8, 32), (16, 16), (4, 8)])
def test_residual_block_uses_the_embedding(c_in, c_out):
    # (4, 8): one channel per GroupNorm group, where an embedding added before the norm would be cancelled
    torch.manual_seed(0)
    block = ResidualBlock(c_in, c_out, emb_dim=12).eval()
    randomise_zero_parameters(block)
    x = torch.randn(2, c_in, 4, 4)
    first, second = block(x, torch.randn(2, 12)), block(x, torch.randn(2, 12))
    assert (first - second).abs().amax(
        dim=(1, 2, 3)
    ).min() > 1e-3  # every image changes


def test_residual_block_rejects_wrong_shapes():
    block = ResidualBlock(8, 8, emb_dim=12)
    with pytest.raises(ValueError):
        block(torch.randn(2, 4, 4, 4), torch.randn(2, 12))
    with pytest.raises(ValueError):
        block(torch.randn(2, 8, 4, 4), torch.randn(2, 5))


# --- SelfAttention2d ----------------------------------------------------------------------------------------


def test_attention_starts_as_identity():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(SelfAttention2d(8, heads=2)(x), x)


def test_attention_is_equivariant_to_permuting_positions():
    torch.manual_seed(0)
    layer = SelfAttention2d(8, heads=2)
    randomise_zero_parameters(layer)
    x = torch.randn(2, 8, 4, 6)
    permutation = torch.randperm(24)
    permuted = x.flatten(2)[:, :, permutation].reshape(x.shape)
    expected = layer(x).flatten(2)[:, :, permutation]
    assert not torch.allclose(
        layer(x), x
    )  # the test would be vacuous for the identity
    torch.testing.assert_close(
        layer(permuted).flatten(2), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_matches_scaled_dot_product_attention(heads):
    torch.manual_seed(heads)
    layer = SelfAttention2d(8, heads=heads)
    randomise_zero_parameters(layer)
    x = torch.randn(3, 8, 4, 5)
    with torch.no_grad():
        q, k, v = layer.qkv(layer.norm(x)).chunk(3, dim=1)
        q, k, v = (
            rearrange(z, "b (n d) h w -> b n (h w) d", n=heads) for z in (q, k, v)
        )
        attended = rearrange(
            F.scaled_dot_product_attention(q, k, v),
            "b n (h w) d -> b (n d) h w",
            h=4,
        )
        expected = x + layer.proj_out(attended)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention2d(6, heads=4)


# --- UNet ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mults, blocks, attention",
    [
        ((1, 2), 1, (1,)),
        ((1, 2), 2, ()),
        ((1, 2, 2), 1, (2,)),
        ((1, 2, 2), 2, (0, 2)),
        ((2,), 1, ()),
    ],
)
def test_unet_shape_and_zero_output_at_init(mults, blocks, attention):
    torch.manual_seed(0)
    model = UNet(
        in_channels=2,
        base_channels=8,
        channel_mults=mults,
        blocks_per_level=blocks,
        attention_levels=attention,
        image_size=8,
        heads=2,
    )
    x = torch.randn(3, 2, 8, 8)
    out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    assert torch.equal(
        out, torch.zeros_like(x)
    )  # the zero-initialised output convolution
    randomise_zero_parameters(model)
    assert model(x, torch.tensor([0, 10, 999])).abs().amin(dim=(1, 2, 3)).min() > 0


@pytest.mark.parametrize("mults, blocks", [((1, 2), 1), ((1, 2, 2), 2), ((2,), 1)])
def test_block_names_are_the_blocks_in_call_order(mults, blocks):
    model = UNet(
        base_channels=8,
        channel_mults=mults,
        blocks_per_level=blocks,
        attention_levels=(),
        image_size=8,
    )
    names = model.block_names()
    modules = dict(model.named_modules())
    called = []
    handles = [
        modules[name].register_forward_hook(
            lambda *_, name=name: called.append(name)
        )
        for name in names
    ]
    model(torch.randn(1, 3, 8, 8), 5)
    for handle in handles:
        handle.remove()
    assert called == names  # each block once, in the order forward runs them
    top = {name.split(".")[0] for name in names}
    with_parameters = {
        name
        for name, child in model.named_children()
        if any(True for _ in child.parameters())
    }
    assert top == with_parameters - {
        "time_embedding",
        "cond_embedding",
    }  # every block of the network is named
    levels = len(mults)
    assert (
        len(names)
        == 1
        + levels * blocks
        + (levels - 1)
        + 3
        + levels * (blocks + 1)
        + (levels - 1)
        + 1
    )


def test_every_decoder_block_reads_the_mirrored_encoder_activation():
    """The skip connections: each decoder block's input ends with the encoder activation of its mirror image
    (last kept, first used); zeroing or reordering the skips fails here."""
    torch.manual_seed(0)
    model = small_unet(
        channel_mults=(1, 2, 2), blocks_per_level=2, attention_levels=(2,)
    )
    randomise_zero_parameters(model)
    kept, read = [], []
    encoder = ["stem"] + [
        name
        for name in model.block_names()
        if name.startswith(("down_levels", "downsamples"))
    ]
    decoder = [name for name in model.block_names() if name.startswith("up_levels")]
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(lambda _m, _a, out: kept.append(out))
        for name in encoder
    ]
    handles += [
        modules[name].register_forward_pre_hook(
            lambda _m, args: read.append(args[0])
        )
        for name in decoder
    ]
    model(torch.randn(2, 3, 8, 8), torch.tensor([3, 500]))
    for handle in handles:
        handle.remove()
    assert len(kept) == len(read) == len(decoder)
    for skip, block_input in zip(reversed(kept), read):
        assert skip.abs().amax() > 0
        torch.testing.assert_close(
            block_input[:, -skip.shape[1] :], skip, atol=0, rtol=0
        )


@pytest.mark.parametrize(
    "class_counts, cond_dim, cond_tokens",
    [(None, None, 0), ((3, 4), None, 0), (None, 6, 0), (None, 6, 2)],
)
def test_unet_every_parameter_learns(class_counts, cond_dim, cond_tokens):
    torch.manual_seed(0)
    model = small_unet(
        channel_mults=(1, 2, 2),
        attention_levels=(0, 2),
        class_counts=class_counts,
        cond_dim=cond_dim,
        cond_tokens=cond_tokens,
    )
    randomise_zero_parameters(model)
    x, t, target = (
        torch.randn(5, 3, 8, 8),
        torch.tensor([1, 50, 300, 999, 7]),
        torch.randn(5, 3, 8, 8),
    )
    if (
        class_counts is not None
    ):  # every row of every table, NULL included, appears in the batch
        cond = torch.tensor([[0, 0], [1, 1], [2, 2], [3, 3], [3, 4]])
    elif cond_dim is not None:  # a real embedding and the NULL one
        cond = torch.cat([torch.randn(3, cond_dim), model.null_cond(2)])
    else:
        cond = None
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.mse_loss(model(x, t, cond), target).backward()
    optimizer.step()
    optimizer.zero_grad()
    if cond_dim is not None:
        cond = torch.cat([cond[:3], model.null_cond(2)])
    F.mse_loss(model(x, t, cond), target).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().amax() > 0, name
        if name.startswith("cond_embedding.tables"):
            assert (parameter.grad.abs().amax(dim=1) > 0).all(), (
                name
            )  # every row, the NULL row included


def test_unet_labels_condition_the_output():
    torch.manual_seed(0)
    model = small_unet(class_counts=(5, 6))
    assert model.class_counts == (5, 6) and model.cond_dim is None
    randomise_zero_parameters(model)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 400])
    null = model.null_cond(2)
    assert null.dtype == torch.long and null.tolist() == [[5, 6], [5, 6]]
    assert torch.equal(model(x, t), model(x, t, null))
    first, second = (
        model(x, t, torch.tensor([[0, 1], [2, 3]])),
        model(x, t, torch.tensor([[4, 1], [2, 5]])),
    )
    assert (first - second).abs().amax(dim=(1, 2, 3)).min() > 1e-5
    assert (first - model(x, t)).abs().amax() > 1e-5


def test_unet_embedding_conditions_the_output_and_its_null_is_learned():
    torch.manual_seed(0)
    model = small_unet(cond_dim=6)
    assert model.cond_dim == 6 and model.class_counts is None
    randomise_zero_parameters(model)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 400])
    null = model.null_cond(2)
    assert null.shape == (2, 6) and torch.equal(
        null, model.cond_embedding.null_vector.expand(2, 6)
    )
    assert torch.equal(model(x, t), model(x, t, null))
    cond = torch.randn(2, 6)
    projection = model.cond_embedding.projection
    expected = (
        model.time_embedding(t) + cond @ projection.weight.T + projection.bias
    )
    torch.testing.assert_close(
        model.embed(t, cond), expected
    )  # added to the time embedding, as in DALL-E 2
    assert (model(x, t, cond) - model(x, t)).abs().amax(dim=(1, 2, 3)).min() > 1e-5
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        model(x, t, torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        model(x, t, torch.ones(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match="not both"):
        small_unet(class_counts=(2,), cond_dim=4)


def test_unet_embedding_tokens_reach_every_attention_layer():
    torch.manual_seed(0)
    model = small_unet(cond_dim=6, cond_tokens=3, attention_levels=(0, 1))
    randomise_zero_parameters(model)
    x, t, cond = torch.randn(2, 3, 8, 8), torch.tensor([3, 400]), torch.randn(2, 6)
    tokens = model.context(cond, 2)
    projection = model.token_projection
    torch.testing.assert_close(
        tokens, (cond @ projection.weight.T + projection.bias).view(2, 3, 64)
    )
    torch.testing.assert_close(
        model.context(None, 2), model.context(model.null_cond(2), 2)
    )
    seen = []
    layers = [m for m in model.modules() if isinstance(m, SelfAttention2d)]
    assert len(layers) == 7  # 2 encoder units, the middle, 4 decoder units
    handles = [
        layer.register_forward_pre_hook(lambda _m, args: seen.append(args[1]))
        for layer in layers
    ]
    out = model(x, t, cond)
    for handle in handles:
        handle.remove()
    assert len(seen) == len(layers)
    for context in seen:
        assert torch.equal(context, tokens)
    # the tokens alone change the output: the same time embedding, other tokens
    model.token_projection.bias.data += 1.0
    assert (model(x, t, cond) - out).abs().amax() > 1e-5
    assert torch.equal(model(x, t), model(x, t, model.null_cond(2)))
    with pytest.raises(ValueError, match="need cond_dim"):
        small_unet(cond_tokens=2)


def test_unet_embed_is_the_time_embedding_plus_the_condition():
    torch.manual_seed(0)
    model = small_unet(class_counts=(2, 3))
    t, labels = torch.tensor([5, 70]), torch.tensor([[1, 0], [2, 3]])
    tables = model.cond_embedding.tables
    expected = model.time_embedding(t) + torch.stack(
        [tables[0].weight[a] + tables[1].weight[b] for a, b in labels.tolist()]
    )
    torch.testing.assert_close(model.embed(t, labels), expected)
    torch.testing.assert_close(
        model.time_embedding(t), model.time_embedding.mlp(timestep_embedding(t, 16))
    )


def test_unet_scalar_timestep_is_broadcast():
    torch.manual_seed(0)
    model = small_unet()
    randomise_zero_parameters(model)
    x = torch.randn(3, 3, 8, 8)
    expected = model(x, torch.full((3,), 17))
    torch.testing.assert_close(model(x, 17), expected, atol=0, rtol=0)
    torch.testing.assert_close(model(x, torch.tensor(17)), expected, atol=0, rtol=0)
    assert not torch.allclose(model(x, 18), expected)


def test_unconditional_unet_rejects_conditions_and_has_no_null():
    model = small_unet()
    assert model.class_counts is None and model.cond_dim is None
    with pytest.raises(ValueError, match="unconditional"):
        model(
            torch.randn(2, 3, 8, 8),
            torch.tensor([1, 2]),
            torch.zeros(2, 1, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="unconditional"):
        model.null_cond(2)


@pytest.mark.parametrize(
    "labels, error",
    [
        (
            [[0, 7], [1, 1]],
            ValueError,
        ),  # 7 > 6, past the NULL index of the second attribute
        ([[-1, 0], [1, 1]], ValueError),
        ([[6, 0], [1, 1]], ValueError),  # 6 > 5
        ([[0], [1]], ValueError),  # one column for two attributes
        ([[0, 0, 0], [1, 1, 1]], ValueError),
        ([[0, 0]], ValueError),  # one row for two images
        ([[0.0, 1.0], [1.0, 1.0]], TypeError),
    ],
)
def test_unet_rejects_bad_labels(labels, error):
    model = small_unet(class_counts=(5, 6))
    with pytest.raises(error):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor(labels))


def test_unet_rejects_conditions_of_the_wrong_kind():
    model = small_unet(class_counts=(5, 6))
    tokens = TokenStates(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="labels must be a torch.Tensor"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), tokens)
    with pytest.raises(TypeError, match="cond must be"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), [[0, 1], [1, 1]])


def test_unet_accepts_the_largest_labels():
    model = small_unet(class_counts=(5, 6))
    assert model(
        torch.randn(2, 3, 8, 8),
        torch.tensor([1, 2]),
        torch.tensor([[5, 6], [4, 5]]),
    ).shape == (2, 3, 8, 8)


@pytest.mark.parametrize(
    "shape", [(2, 3, 16, 16), (2, 1, 8, 8), (3, 8, 8), (2, 3, 8, 4)]
)
def test_unet_rejects_wrong_images(shape):
    with pytest.raises(ValueError, match="expects images"):
        small_unet()(torch.randn(shape), torch.tensor([1, 2]))


@pytest.mark.parametrize(
    "t, error",
    [
        (torch.tensor([1, 2, 3]), ValueError),
        (torch.tensor([[1], [2]]), ValueError),
        (torch.tensor([True, False]), TypeError),
        ("5", TypeError),
        (True, TypeError),
    ],
)
def test_unet_rejects_wrong_timesteps(t, error):
    with pytest.raises(error, match="timestep"):
        small_unet()(torch.randn(2, 3, 8, 8), t)


def test_unet_checks_survive_a_deep_copy():
    model = copy.deepcopy(small_unet())  # as the EMA copies it
    with pytest.raises(ValueError, match="expects images"):
        model(torch.randn(2, 3, 16, 16), 1)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (
            dict(image_size=10, channel_mults=(1, 2, 2)),
            ValueError,
        ),  # 10 not divisible by 4
        (dict(image_size=6, channel_mults=(1, 1, 1)), ValueError),
        (dict(attention_levels=(2,)), ValueError),  # only levels 0, 1
        (dict(channel_mults=()), ValueError),
        (dict(base_channels=7), ValueError),
        (dict(dropout=1.0), ValueError),
        (dict(dropout=float("nan")), ValueError),
        (dict(class_counts=()), ValueError),
        (dict(class_counts=(0, 3)), ValueError),
        (dict(cond_dim=0), ValueError),
        (
            dict(blocks_per_level=10**9),
            ValueError,
        ),  # fails at once instead of building forever
        (dict(channel_mults=(1,) * 9, image_size=256), ValueError),
        (dict(base_channels=16.0), TypeError),
        (dict(channel_mults="12"), TypeError),
        (dict(cond_dim=4.5), TypeError),
    ],
)
def test_unet_rejects_bad_configuration(kwargs, error):
    with pytest.raises(error):
        small_unet(**kwargs)


def test_unet_runs_under_bf16_autocast():
    torch.manual_seed(0)
    model = small_unet(class_counts=(2,))
    randomise_zero_parameters(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([5, 600]), torch.tensor([[0], [2]]))
    assert out.shape == x.shape
    assert torch.isfinite(out.float()).all()
    torch.testing.assert_close(
        out.float(),
        model(x, torch.tensor([5, 600]), torch.tensor([[0], [2]])),
        atol=0.1,
        rtol=0.1,
    )


def test_unet_parameters_grow_with_the_square_of_the_width():
    def count(model: UNet) -> int:
        return sum(parameter.numel() for parameter in model.parameters())

    ratio = count(UNet(base_channels=32)) / count(UNet(base_channels=16))
    assert 3.5 < ratio < 4.5


# --- bad input at the public entry points ---------------------------------------


def test_timestep_embedding_rejects_missing_and_non_finite_timesteps():
    for embed in (lambda t: timestep_embedding(t, 8), TimestepEmbedding(8, 12)):
        with pytest.raises(TypeError, match="t must be a torch.Tensor"):
            embed(None)
        with pytest.raises(ValueError, match="1 NaN or infinite"):
            embed(torch.tensor([1.0, float("nan")]))
        with pytest.raises(ValueError, match="2 NaN or infinite"):
            embed(torch.tensor([float("inf"), -float("inf")]))


@pytest.mark.parametrize(
    "device, error",
    [(None, TypeError), ([1], TypeError), (3, TypeError), ("nonsense", ValueError)],
)
def test_token_states_to_checks_the_device(device, error):
    states = TokenStates(torch.randn(2, 3, 4), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(error, match="device"):
        states.to(device)


def test_token_states_reject_non_finite_states():
    states = torch.randn(2, 3, 4)
    states[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="states holds 1 NaN"):
        TokenStates(states, torch.ones(2, 3, dtype=torch.bool))


@pytest.mark.parametrize(
    "device, error",
    [([1], TypeError), (42, TypeError), ("nonsense", ValueError), ("", ValueError)],
)
def test_null_conditions_check_the_device(device, error):
    nulls = [
        LabelEmbedding((3, 2), 8).null,
        EmbeddingProjection(4, 8).null,
        small_unet(class_counts=(3, 2)).null_cond,
        small_unet(cond_dim=4).null_cond,
    ]
    for null in nulls:
        with pytest.raises(error, match="device"):
            null(2, device)
        # a valid device gives what the default gives
        assert torch.equal(null(2, "cpu"), null(2))
        assert torch.equal(null(2, torch.device("cpu")), null(2))


@pytest.mark.parametrize(
    "t",
    [float("nan"), float("inf"), -float("inf"), torch.tensor([0.5, float("nan")])],
)
def test_unet_rejects_non_finite_timesteps(t):
    with pytest.raises(ValueError, match="finite|NaN"):
        small_unet()(torch.randn(2, 3, 8, 8), t)


def test_unet_embed_rejects_bad_conditions_and_timesteps():
    model = small_unet(class_counts=(3, 2))
    t = torch.tensor([1, 2])
    with pytest.raises(TypeError, match="cond must be Tensor or TokenStates"):
        model.embed(t, "x")
    with pytest.raises(TypeError, match="cond must be Tensor or TokenStates"):
        model.embed(t, [1])
    with pytest.raises(TypeError, match="t must be a torch.Tensor"):
        model.embed(None)


def test_coordinate_channels_are_each_pixels_column_and_row():
    x = torch.randn(2, 3, 4, 5)
    grid = with_coordinates(x)
    assert grid.shape == (2, 5, 4, 5)
    torch.testing.assert_close(grid[:, :3], x)
    for row in range(4):
        for column in range(5):
            expected = torch.tensor([2 * column / 4 - 1, 2 * row / 3 - 1])
            torch.testing.assert_close(grid[1, 3:, row, column], expected)


def test_a_coordconv_unet_with_zero_coordinate_weights_is_the_plain_unet():
    torch.manual_seed(0)
    plain = UNet(base_channels=8, image_size=16, cond_dim=6)
    torch.manual_seed(0)
    located = UNet(base_channels=8, image_size=16, cond_dim=6, coordinates=True)
    assert located.stem.weight.shape[1] == 5
    state = plain.state_dict()
    stem = torch.zeros_like(located.stem.weight)
    stem[:, :3] = state["stem.weight"]
    located.load_state_dict(state | {"stem.weight": stem})
    for module in (plain, located):  # outputs that are not zero
        torch.nn.init.normal_(
            module.out[-1].weight, generator=torch.Generator().manual_seed(1)
        )
    x, t, cond = (
        torch.randn(2, 3, 16, 16),
        torch.tensor([3, 400]),
        torch.randn(2, 6),
    )
    torch.testing.assert_close(located(x, t, cond), plain(x, t, cond))
    with torch.no_grad():
        located.stem.weight[:, 3:] = 0.1  # now the coordinates are read
    assert not torch.allclose(located(x, t, cond), plain(x, t, cond), atol=1e-3)
