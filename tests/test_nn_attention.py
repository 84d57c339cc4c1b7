"""Tests for minigen.nn.attention: attention() against F.scaled_dot_product_attention with boolean
masks, the mask helpers against brute force, MultiHeadAttention against torch.nn.MultiheadAttention
with copied weights, causal and padding behaviour, permutation equivariance, the 2-D forms, bf16
autocast, and the input checks."""

import copy

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minigen.nn.attention import (
    CrossAttention2d,
    MultiHeadAttention,
    SelfAttention2d,
    attention,
    causal_mask,
    combine_masks,
    padding_mask,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_zero_parameters(module: torch.nn.Module, std: float = 0.3) -> None:
    """Give every all-zero parameter (zero-initialised projections, norm shifts) random values."""
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0, std)


def qkv(b, heads, lq, lk, d, dv=None, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, heads, lq, d, dtype=dtype, generator=g)
    k = torch.randn(b, heads, lk, d, dtype=dtype, generator=g)
    v = torch.randn(b, heads, lk, dv or d, dtype=dtype, generator=g)
    return q, k, v


def random_mask(shape, seed=0):
    """A random boolean mask whose every row (last axis) keeps at least one key."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(shape, generator=g) < 0.5
    mask[..., 0] = True
    return mask


# --- attention() -------------------------------------------------------------------------------------------

SHAPES = [
    (2, 1, 5, 5, 4, None),
    (3, 4, 7, 3, 8, None),
    (1, 2, 1, 9, 16, 5),
    (2, 3, 6, 6, 2, 3),
]


@pytest.mark.parametrize("b, heads, lq, lk, d, dv", SHAPES)
def test_attention_matches_sdpa_without_mask(b, heads, lq, lk, d, dv):
    q, k, v = qkv(b, heads, lq, lk, d, dv)
    out = attention(q, k, v)
    assert out.shape == (b, heads, lq, dv or d) and out.dtype == torch.float64
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("b, heads, lq, lk, d, dv", SHAPES)
@pytest.mark.parametrize(
    "mask_shape", ["full", "per batch", "keys", "2d", "1d keys"]
)
def test_attention_matches_sdpa_with_boolean_masks(
    b, heads, lq, lk, d, dv, mask_shape
):
    q, k, v = qkv(b, heads, lq, lk, d, dv, seed=1)
    shape = {
        "full": (b, heads, lq, lk),
        "per batch": (b, 1, lq, lk),
        "keys": (b, 1, 1, lk),
        "2d": (lq, lk),
        "1d keys": (lk,),
    }[mask_shape]
    mask = random_mask(shape, seed=2)
    expected = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask.expand(b, heads, lq, lk)
    )
    torch.testing.assert_close(
        attention(q, k, v, mask), expected, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("length", [1, 4, 9])
def test_attention_with_causal_and_padding_masks_matches_sdpa(length):
    q, k, v = qkv(3, 2, length, length, 4, seed=length)
    lengths = torch.tensor([length, max(1, length - 2), 1])
    mask = combine_masks(causal_mask(length), padding_mask(lengths, length))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(
        attention(q, k, v, mask), expected, rtol=1e-12, atol=1e-12
    )
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(
        attention(q, k, v, causal_mask(length)), causal, rtol=1e-12, atol=1e-12
    )


def test_attention_rows_with_no_key_output_zero_without_nan():
    q, k, v = qkv(2, 2, 4, 5, 3, seed=3)
    q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True)
    mask = random_mask((2, 2, 4, 5), seed=4)
    mask[0, 1, 2] = False  # one query with no key at all
    mask[1] = False  # a whole sequence with no key (an empty context)
    out = attention(q, k, v, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 1, 2], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    torch.testing.assert_close(
        out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    )
    out.square().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))
    assert torch.equal(
        q.grad[1], torch.zeros_like(q.grad[1])
    )  # nothing attended: no gradient
    # the other rows are untouched by the empty ones
    keep = mask.any(-1)
    torch.testing.assert_close(
        out[keep], F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[keep]
    )


def test_attention_weights_are_scaled_by_sqrt_d():
    # one query, two keys: the weight of key 0 is sigmoid((s0 - s1) / sqrt(d)), checked by hand
    d = 16
    q = torch.zeros(1, 1, 1, d, dtype=torch.float64)
    q[..., 0] = 1.0
    k = torch.zeros(1, 1, 2, d, dtype=torch.float64)
    k[0, 0, 0, 0] = 8.0  # score 8 vs 0
    v = torch.tensor([[[[1.0], [0.0]]]], dtype=torch.float64)
    expected = torch.sigmoid(torch.tensor(8.0 / d**0.5, dtype=torch.float64))
    torch.testing.assert_close(attention(q, k, v).flatten(), expected.reshape(1))


def test_attention_under_bf16_autocast():
    q, k, v = qkv(2, 2, 6, 5, 8, dtype=torch.float32, seed=5)
    mask = random_mask((2, 1, 6, 5), seed=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert out.shape == (2, 2, 6, 8) and out.dtype == torch.bfloat16
    reference = F.scaled_dot_product_attention(
        q.double(), k.double(), v.double(), attn_mask=mask
    )
    torch.testing.assert_close(out.double(), reference, atol=5e-2, rtol=5e-2)
    plain = attention(
        q.bfloat16(), k.bfloat16(), v.bfloat16(), mask
    )  # bf16 tensors, no autocast
    assert plain.dtype == torch.bfloat16
    torch.testing.assert_close(plain.double(), reference, atol=5e-2, rtol=5e-2)


# --- mask helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 7])
def test_causal_mask_against_brute_force(length):
    expected = torch.tensor(
        [[j <= i for j in range(length)] for i in range(length)]
    )
    mask = causal_mask(length)
    assert mask.dtype == torch.bool and torch.equal(mask, expected)


def test_padding_mask_from_lengths_and_from_booleans():
    lengths = torch.tensor([3, 0, 5])
    expected = torch.tensor([[j < n for j in range(5)] for n in (3, 0, 5)])
    mask = padding_mask(lengths)
    assert mask.shape == (3, 1, 1, 5) and mask.dtype == torch.bool
    assert torch.equal(mask[:, 0, 0], expected)
    longer = padding_mask(lengths, length=7)
    assert longer.shape == (3, 1, 1, 7) and not longer[..., 5:].any()
    assert torch.equal(padding_mask(expected), mask)


def test_combine_masks_is_logical_and_with_broadcasting():
    a, b = random_mask((2, 1, 1, 4), seed=7), random_mask((4, 4), seed=8)
    combined = combine_masks(a, None, b)
    assert combined.shape == (2, 1, 4, 4)
    expected = torch.tensor(
        [
            [
                [
                    [bool(a[n, 0, 0, j]) and bool(b[i, j]) for j in range(4)]
                    for i in range(4)
                ]
            ]
            for n in range(2)
        ]
    )
    assert torch.equal(combined, expected)
    assert combine_masks(None, None) is None
    assert combine_masks(a) is a


# --- MultiHeadAttention against torch.nn.MultiheadAttention -------------------------------------------------


def torch_twin(layer: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    """torch.nn.MultiheadAttention with `layer`'s weights (separate key/value widths when they differ)."""
    twin = torch.nn.MultiheadAttention(
        layer.dim,
        layer.heads,
        kdim=layer.context_dim,
        vdim=layer.context_dim,
        batch_first=True,
        dtype=layer.to_q.weight.dtype,
    )
    with torch.no_grad():
        if twin._qkv_same_embed_dim:
            twin.in_proj_weight.copy_(
                torch.cat([layer.to_q.weight, layer.to_k.weight, layer.to_v.weight])
            )
        else:
            twin.q_proj_weight.copy_(layer.to_q.weight)
            twin.k_proj_weight.copy_(layer.to_k.weight)
            twin.v_proj_weight.copy_(layer.to_v.weight)
        twin.in_proj_bias.copy_(
            torch.cat([layer.to_q.bias, layer.to_k.bias, layer.to_v.bias])
        )
        twin.out_proj.weight.copy_(layer.to_out.weight)
        twin.out_proj.bias.copy_(layer.to_out.bias)
    return twin


@pytest.mark.parametrize("dim, heads", [(8, 1), (8, 2), (12, 4)])
@pytest.mark.parametrize("use_mask", [False, True])
def test_self_attention_matches_torch(dim, heads, use_mask):
    torch.manual_seed(dim + heads)
    layer = MultiHeadAttention(dim, heads).double()
    x = torch.randn(3, 6, dim, dtype=torch.float64)
    key_mask = (
        padding_mask(torch.tensor([6, 2, 4]), 6)[:, 0, 0] if use_mask else None
    )
    expected, _ = torch_twin(layer)(
        x,
        x,
        x,
        key_padding_mask=None if key_mask is None else ~key_mask,
        need_weights=False,
    )
    torch.testing.assert_close(
        layer(x, key_mask=key_mask), expected, rtol=1e-10, atol=1e-10
    )


def test_causal_self_attention_matches_torch():
    torch.manual_seed(0)
    layer = MultiHeadAttention(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    key_mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    expected, _ = torch_twin(layer)(
        x,
        x,
        x,
        attn_mask=~causal_mask(5),
        key_padding_mask=~key_mask,
        need_weights=False,
    )
    torch.testing.assert_close(
        layer(x, key_mask=key_mask, causal=True), expected, rtol=1e-10, atol=1e-10
    )


@pytest.mark.parametrize(
    "dim, heads, context_dim", [(8, 2, 5), (12, 3, 12), (6, 1, 10)]
)
def test_cross_attention_matches_torch(dim, heads, context_dim):
    torch.manual_seed(context_dim)
    layer = MultiHeadAttention(dim, heads, context_dim).double()
    x = torch.randn(3, 4, dim, dtype=torch.float64)
    context = torch.randn(3, 7, context_dim, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([7, 1, 3]), 7)[:, 0, 0]
    expected, _ = torch_twin(layer)(
        x, context, context, key_padding_mask=~key_mask, need_weights=False
    )
    out = layer(x, context, key_mask)
    assert out.shape == (3, 4, dim)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


# --- behaviour: causality, padding, permutations -------------------------------------------------------------


def test_causal_output_ignores_the_future_and_gets_no_gradient_from_it():
    torch.manual_seed(1)
    layer = MultiHeadAttention(8, 2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 2, 8, dtype=torch.float64)
    torch.testing.assert_close(
        layer(changed, causal=True)[:, :4],
        layer(x, causal=True)[:, :4],
        rtol=0,
        atol=1e-12,
    )
    assert not torch.allclose(
        layer(changed)[:, :4], layer(x)[:, :4]
    )  # without the mask the past changes
    for i in range(6):
        x_grad = x.clone().requires_grad_(True)
        layer(x_grad, causal=True)[:, i].sum().backward()
        assert torch.equal(
            x_grad.grad[:, i + 1 :], torch.zeros_like(x_grad.grad[:, i + 1 :])
        )
        assert (
            x_grad.grad[:, : i + 1].abs().sum(-1).min() > 0
        )  # every visible token matters


def test_padding_tokens_do_not_influence_the_others():
    torch.manual_seed(2)
    layer = MultiHeadAttention(8, 2, context_dim=6).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    context = torch.randn(2, 5, 6, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([2, 4]), 5)[:, 0, 0]
    changed = torch.where(
        key_mask[..., None], context, torch.randn_like(context) * 10
    )
    torch.testing.assert_close(
        layer(x, changed, key_mask), layer(x, context, key_mask), rtol=0, atol=1e-12
    )
    assert not torch.allclose(
        layer(x, changed), layer(x, context)
    )  # unmasked, the padding counts
    # self-attention: the real tokens' outputs do not see the padding tokens
    self_layer = MultiHeadAttention(8, 2).double()
    tokens = torch.randn(2, 5, 8, dtype=torch.float64)
    changed_tokens = torch.where(
        key_mask[..., None], tokens, torch.randn_like(tokens)
    )
    real = key_mask[..., None].expand(-1, -1, 8)
    torch.testing.assert_close(
        self_layer(changed_tokens, key_mask=key_mask)[real],
        self_layer(tokens, key_mask=key_mask)[real],
        rtol=0,
        atol=1e-12,
    )


def test_unmasked_self_attention_is_permutation_equivariant():
    torch.manual_seed(3)
    layer = MultiHeadAttention(12, 3).double()
    x = torch.randn(2, 7, 12, dtype=torch.float64)
    permutation = torch.randperm(7)
    torch.testing.assert_close(
        layer(x[:, permutation]), layer(x)[:, permutation], rtol=1e-12, atol=1e-12
    )
    # a causal layer is not: the order is what it reads
    assert not torch.allclose(
        layer(x[:, permutation], causal=True), layer(x, causal=True)[:, permutation]
    )


def test_multi_head_attention_under_bf16_autocast():
    torch.manual_seed(4)
    layer = MultiHeadAttention(8, 2, context_dim=6)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 6)
    key_mask = torch.tensor([[True, True, False], [True, False, False]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x, context, key_mask)
    assert out.shape == (2, 5, 8) and out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), layer(x, context, key_mask), atol=5e-2, rtol=5e-2
    )


# --- SelfAttention2d and CrossAttention2d -------------------------------------------------------------------


def test_self_attention_2d_matches_sdpa_and_checks_inputs():
    torch.manual_seed(5)
    layer = SelfAttention2d(8, heads=2).double()
    randomise_zero_parameters(layer)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = (
            rearrange(z, "b (n d) h w -> b n (h w) d", n=2)
            for z in layer.qkv(layer.norm(x)).chunk(3, 1)
        )
        expected = x + layer.proj_out(
            rearrange(
                F.scaled_dot_product_attention(q, k, v),
                "b n (h w) d -> b (n d) h w",
                h=3,
            )
        )
        torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, H, W\)"):
        layer(torch.randn(2, 6, 3, 4))
    with pytest.raises(ValueError, match="4-d"):
        layer(torch.randn(8, 3, 4))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.ones(2, 8, 3, 4, dtype=torch.long))


def test_self_attention_2d_with_context_attends_to_tokens_and_positions():
    torch.manual_seed(5)
    layer = SelfAttention2d(8, heads=2, context_dim=5).double()
    randomise_zero_parameters(layer)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    context = torch.randn(2, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        q, k, v = layer.qkv(layer.norm(x)).flatten(2).chunk(3, 1)  # (B, C, HW)
        k_c, v_c = layer.context_kv(context).chunk(2, -1)  # (B, Lc, C)
        keys = torch.cat([k_c, k.transpose(1, 2)], 1)  # (B, Lc + HW, C)
        values = torch.cat([v_c, v.transpose(1, 2)], 1)
        heads = [
            F.scaled_dot_product_attention(
                q.transpose(1, 2)[..., h * 4 : h * 4 + 4],
                keys[..., h * 4 : h * 4 + 4],
                values[..., h * 4 : h * 4 + 4],
            )
            for h in range(2)
        ]  # each (B, HW, 4)
        out = torch.cat(heads, -1).transpose(1, 2).reshape(2, 8, 3, 4)
        expected = x + layer.proj_out(out)
        torch.testing.assert_close(
            layer(x, context), expected, rtol=1e-12, atol=1e-12
        )
        # the tokens matter: other tokens, other output
        assert (layer(x, context) - layer(x, context.flip(0))).abs().amax() > 1e-6
    with pytest.raises(ValueError, match="context"):
        layer(x.float())
    with pytest.raises(ValueError, match=r"context must have shape \(2, L, 5\)"):
        layer(x, torch.randn(2, 3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="context_dim=None"):
        SelfAttention2d(8, heads=2)(x.float(), context.float())


def test_self_attention_2d_is_the_identity_at_initialisation():
    torch.manual_seed(6)
    x = torch.randn(2, 8, 3, 4)
    assert torch.equal(SelfAttention2d(8, heads=2)(x), x)


def test_cross_attention_2d_is_the_identity_at_initialisation():
    torch.manual_seed(6)
    layer = CrossAttention2d(8, context_dim=5, heads=2)
    x, context = torch.randn(2, 8, 3, 4), torch.randn(2, 6, 5)
    assert torch.equal(layer(x, context), x)
    assert torch.equal(layer(x, context, torch.ones(2, 6, dtype=torch.bool)), x)


def test_cross_attention_2d_reads_the_context_but_not_its_padding():
    torch.manual_seed(7)
    layer = CrossAttention2d(8, context_dim=5, heads=2).double()
    randomise_zero_parameters(layer)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    context = torch.randn(2, 6, 5, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([4, 1]), 6)[:, 0, 0]
    out = layer(x, context, key_mask)
    assert out.shape == x.shape and not torch.allclose(out, x)
    other_context = torch.randn_like(context)
    assert (layer(x, other_context, key_mask) - out).abs().amax(
        dim=(1, 2, 3)
    ).min() > 1e-3
    padded = torch.where(
        key_mask[..., None], context, torch.randn_like(context) * 10
    )
    torch.testing.assert_close(layer(x, padded, key_mask), out, rtol=0, atol=1e-12)
    # an all-padding context: every query attends to nothing (0), and only the output bias is added
    empty = layer(x, context, torch.zeros(2, 6, dtype=torch.bool))
    torch.testing.assert_close(
        empty, x + layer.attention.to_out.bias[:, None, None], rtol=0, atol=1e-12
    )


def test_cross_attention_2d_matches_a_reference_composition():
    torch.manual_seed(8)
    layer = CrossAttention2d(8, context_dim=5, heads=2).double()
    randomise_zero_parameters(layer)
    x = torch.randn(2, 8, 3, 4, dtype=torch.float64)
    context = torch.randn(2, 6, 5, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([6, 3]), 6)[:, 0, 0]
    tokens = rearrange(layer.norm(x), "b c h w -> b (h w) c")
    expected, _ = torch_twin(layer.attention)(
        tokens, context, context, key_padding_mask=~key_mask, need_weights=False
    )
    expected = x + rearrange(expected, "b (h w) c -> b c h w", h=3)
    torch.testing.assert_close(
        layer(x, context, key_mask), expected, rtol=1e-10, atol=1e-10
    )


def test_2d_attention_under_bf16_autocast():
    torch.manual_seed(9)
    x, context = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 6)
    for layer, args in (
        (SelfAttention2d(8, 2), (x,)),
        (CrossAttention2d(8, 6, 2), (x, context)),
    ):
        randomise_zero_parameters(layer)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(*args)
        assert (
            out.shape == x.shape and out.dtype == torch.float32
        )  # x + a bf16 branch
        torch.testing.assert_close(out, layer(*args), atol=5e-2, rtol=5e-2)


def test_deep_copies_check_their_own_inputs():
    layer = MultiHeadAttention(8, 2)
    twin = copy.deepcopy(layer)
    twin.dim = 6  # the copy's hook must read the copy
    with pytest.raises(ValueError, match=r"\(B, L, 6\)"):
        twin(torch.randn(1, 3, 8))
    assert layer(torch.randn(1, 3, 8)).shape == (1, 3, 8)


# --- input checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: MultiHeadAttention(10, 4),
            ValueError,
            "dim must be divisible by heads",
        ),
        (lambda: MultiHeadAttention(8, 0), ValueError, "heads must be an int >= 1"),
        (lambda: MultiHeadAttention(8.0, 2), TypeError, "dim must be an int"),
        (
            lambda: MultiHeadAttention(8, 2, context_dim=0),
            ValueError,
            "context_dim must be an int >= 1",
        ),
        (
            lambda: SelfAttention2d(6, heads=4),
            ValueError,
            "channels must be divisible by heads",
        ),
        (
            lambda: CrossAttention2d(8, 5, heads=3),
            ValueError,
            "channels must be divisible by heads",
        ),
        (
            lambda: CrossAttention2d(8, True),
            TypeError,
            "context_dim must be an int",
        ),
    ],
)
def test_constructors_reject_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


Q, K, V = qkv(2, 2, 3, 4, 8, dtype=torch.float32)


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((Q[0], K, V), ValueError, "q must be a 4-d tensor"),
        ((Q, K[:, :1], V), ValueError, "q, k, v must have shapes"),
        ((Q, K, V[:, :, :3]), ValueError, "q, k, v must have shapes"),
        ((Q, K[..., :4], V), ValueError, "q, k, v must have shapes"),
        ((Q, K, V.double()), TypeError, "share one dtype"),
        ((Q, K.long(), V), TypeError, "k must be a floating-point tensor"),
        ((Q, K, [1.0]), TypeError, "v must be a torch.Tensor"),
        (
            (Q, K, V, torch.ones(2, 2, 3, 4)),
            TypeError,
            "mask must be a bool tensor",
        ),
        (
            (Q, K, V, torch.ones(3, 4, dtype=torch.int64)),
            TypeError,
            "mask must be a bool tensor",
        ),
        (
            (Q, K, V, torch.ones(4, 3, dtype=torch.bool)),
            ValueError,
            "does not broadcast",
        ),
        (
            (Q, K, V, torch.ones(2, 2, 1, 3, 4, dtype=torch.bool)),
            ValueError,
            "does not broadcast",
        ),
        (
            (Q, K, V, torch.ones(3, 2, 1, 4, dtype=torch.bool)),
            ValueError,
            "does not broadcast",
        ),
    ],
)
def test_attention_rejects_bad_inputs(args, error, match):
    with pytest.raises(error, match=match):
        attention(*args)


def test_mask_helpers_reject_bad_inputs():
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        causal_mask(0)
    with pytest.raises(TypeError, match="length must be an int"):
        causal_mask(3.0)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 4\]"):
        padding_mask(torch.tensor([2, 5]), 4)
    with pytest.raises(ValueError, match="lengths must lie"):
        padding_mask(torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="integer lengths"):
        padding_mask(torch.tensor([2.0, 3.0]))
    with pytest.raises(TypeError, match="integer lengths"):
        padding_mask(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="without length"):
        padding_mask(torch.ones(2, 3, dtype=torch.bool), 5)
    with pytest.raises(ValueError, match="1 or 2-d"):
        padding_mask(torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="valid must be a torch.Tensor"):
        padding_mask([3, 2])


def test_multi_head_attention_rejects_bad_inputs():
    layer, cross = MultiHeadAttention(8, 2), MultiHeadAttention(8, 2, context_dim=5)
    x, context = torch.randn(2, 3, 8), torch.randn(2, 4, 5)
    cases = [
        (
            lambda: layer(torch.randn(2, 3, 6)),
            ValueError,
            r"x must have shape \(B, L, 8\)",
        ),
        (lambda: layer(torch.randn(3, 8)), ValueError, "x must be a 3-d tensor"),
        (lambda: cross(x), ValueError, "pass context"),
        (
            lambda: cross(x, torch.randn(2, 4, 8)),
            ValueError,
            r"context must have shape \(2, L, 5\)",
        ),
        (
            lambda: cross(x, torch.randn(3, 4, 5)),
            ValueError,
            r"context must have shape \(2, L, 5\)",
        ),
        (
            lambda: cross(x, context, torch.ones(2, 3, dtype=torch.bool)),
            ValueError,
            r"key_mask must have shape \(2, 4\)",
        ),
        (
            lambda: cross(x, context, torch.ones(2, 4)),
            TypeError,
            "key_mask must be a bool tensor",
        ),
        (
            lambda: cross(x, context, torch.ones(2, 1, 1, 4, dtype=torch.bool)),
            ValueError,
            "key_mask must be a 2-d",
        ),
        (
            lambda: layer(x, key_mask=torch.ones(2, 4, dtype=torch.bool)),
            ValueError,
            r"key_mask must have shape \(2, 3\)",
        ),
        (lambda: cross(x, context, causal=True), ValueError, "self-attention only"),
        (lambda: layer(x, causal=1), TypeError, "causal must be True or False"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_cross_attention_2d_rejects_bad_inputs():
    layer = CrossAttention2d(8, context_dim=5, heads=2)
    x = torch.randn(2, 8, 3, 3)
    with pytest.raises(ValueError, match="needs a context"):
        layer(x, None)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 8, H, W\)"):
        layer(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"context must have shape \(2, L, 5\)"):
        layer(x, torch.randn(2, 4, 6))
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 4\)"):
        layer(x, torch.randn(2, 4, 5), torch.ones(2, 5, dtype=torch.bool))


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---


def test_causal_mask_checks_its_device():
    assert causal_mask(3, "cpu").device.type == "cpu"
    assert torch.equal(causal_mask(3, torch.device("cpu")), causal_mask(3))
    with pytest.raises(
        TypeError, match="device must be a device name or torch.device, got int"
    ):
        causal_mask(3, 3)
    with pytest.raises(ValueError, match="device must name a torch device"):
        causal_mask(3, "nonsense")


def test_combine_masks_takes_bool_tensors_that_broadcast():
    with pytest.raises(
        TypeError, match=r"masks\[0\] must be a torch.Tensor of bools, got str"
    ):
        combine_masks("x")
    with pytest.raises(
        TypeError, match=r"masks\[1\] must be a bool tensor .* got torch.float32"
    ):
        combine_masks(causal_mask(3), torch.ones(3, 3))
    with pytest.raises(
        ValueError,
        match=r"masks of shapes \(3, 3\), \(4, 4\) do not broadcast together",
    ):
        combine_masks(causal_mask(3), causal_mask(4))
    # None entries are skipped (no mask of that kind), as MultiHeadAttention relies on
    assert torch.equal(combine_masks(None, causal_mask(3)), causal_mask(3))


def test_padding_mask_refuses_a_length_that_would_not_fit_in_memory():
    # before: 10**9 lengths tried to allocate an 8 GB mask (or hung)
    with pytest.raises(
        ValueError,
        match=r"lengths must lie in \[0, 1000000\], got lengths from 3 to 1000000000",
    ):
        padding_mask(torch.tensor([3, 10**9]))
    with pytest.raises(ValueError, match="length must be an int <= 1,000,000"):
        padding_mask(torch.tensor([3, 5]), 10**9)


def test_cross_attention_2d_needs_an_int_context_dim():
    with pytest.raises(TypeError, match="context_dim must be an int, got None"):
        CrossAttention2d(8, None)
    with pytest.raises(ValueError, match="context_dim must be an int >= 1, got 0"):
        CrossAttention2d(8, 0)
