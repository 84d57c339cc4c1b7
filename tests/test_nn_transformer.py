"""Tests for minigen.nn.transformer: the pre-LN block against a hand-written composition of
torch.nn.functional operations, its causal and padding behaviour, dropout, bf16 autocast and input checks."""

import pytest
import torch
import torch.nn.functional as F

from minigen.nn.attention import MultiHeadAttention, causal_mask, padding_mask
from minigen.nn.transformer import TransformerBlock

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise(module: torch.nn.Module, std: float = 0.3) -> None:
    """Random values for every parameter, LayerNorm scales and shifts included (so a swapped norm shows)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, std)


def reference_attention(layer: MultiHeadAttention, x, context, mask):
    """Multi-head attention from F.linear and F.scaled_dot_product_attention with `layer`'s weights."""
    heads = layer.heads

    def split(z):  # (B, L, dim) -> (B, heads, L, d)
        return z.unflatten(-1, (heads, -1)).transpose(1, 2)

    q = split(F.linear(x, layer.to_q.weight, layer.to_q.bias))
    k = split(F.linear(context, layer.to_k.weight, layer.to_k.bias))
    v = split(F.linear(context, layer.to_v.weight, layer.to_v.bias))
    out = (
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        .transpose(1, 2)
        .flatten(2)
    )
    return F.linear(out, layer.to_out.weight, layer.to_out.bias)


def reference_block(
    block: TransformerBlock,
    x,
    context=None,
    key_mask=None,
    context_mask=None,
    causal=False,
):
    """The pre-LN block written out: x + attn(LN(x)), x + cross(LN(x), c), x + MLP(LN(x))."""

    def ln(norm, z):
        return F.layer_norm(z, (z.shape[-1],), norm.weight, norm.bias, norm.eps)

    length = x.shape[1]
    mask = torch.ones(x.shape[0], 1, length, length, dtype=torch.bool)
    if key_mask is not None:
        mask = mask & key_mask[:, None, None, :]
    if causal:
        mask = mask & torch.ones(length, length, dtype=torch.bool).tril()
    h = ln(block.attention_norm, x)
    x = x + reference_attention(block.attention, h, h, mask)
    if context is not None:
        cmask = None if context_mask is None else context_mask[:, None, None, :]
        x = x + reference_attention(
            block.cross_attention, ln(block.cross_norm, x), context, cmask
        )
    first, second = block.mlp[0], block.mlp[2]
    hidden = F.gelu(F.linear(ln(block.mlp_norm, x), first.weight, first.bias))
    return x + F.linear(hidden, second.weight, second.bias)


@pytest.mark.parametrize("dim, heads, ratio", [(8, 2, 4), (12, 3, 2), (6, 1, 1.5)])
@pytest.mark.parametrize("causal", [False, True])
def test_block_matches_the_pre_ln_composition(dim, heads, ratio, causal):
    torch.manual_seed(dim)
    block = TransformerBlock(dim, heads, mlp_ratio=ratio).double()
    randomise(block)
    x = (
        torch.randn(3, 5, dim, dtype=torch.float64) * 2 + 1
    )  # not normalised: LN's place matters
    key_mask = padding_mask(torch.tensor([5, 3, 1]), 5)[:, 0, 0]
    for mask in (None, key_mask):
        expected = reference_block(block, x, key_mask=mask, causal=causal)
        torch.testing.assert_close(
            block(x, key_mask=mask, causal=causal), expected, rtol=1e-10, atol=1e-10
        )
    assert block.mlp[0].out_features == round(ratio * dim)


def test_block_with_cross_attention_matches_the_pre_ln_composition():
    torch.manual_seed(1)
    block = TransformerBlock(8, 2, context_dim=5).double()
    randomise(block)
    x = torch.randn(2, 4, 8, dtype=torch.float64) * 2 + 1
    context = torch.randn(2, 6, 5, dtype=torch.float64)
    context_mask = padding_mask(torch.tensor([6, 2]), 6)[:, 0, 0]
    key_mask = padding_mask(torch.tensor([4, 3]), 4)[:, 0, 0]
    expected = reference_block(
        block, x, context, key_mask, context_mask, causal=True
    )
    out = block(
        x, context, key_mask=key_mask, context_mask=context_mask, causal=True
    )
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        block(x, context),
        reference_block(block, x, context),
        rtol=1e-10,
        atol=1e-10,
    )


def test_causal_block_ignores_the_future():
    torch.manual_seed(2)
    block = TransformerBlock(8, 2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 3:] = torch.randn(2, 3, 8, dtype=torch.float64)
    torch.testing.assert_close(
        block(changed, causal=True)[:, :3],
        block(x, causal=True)[:, :3],
        rtol=0,
        atol=1e-12,
    )
    assert not torch.allclose(block(changed)[:, :3], block(x)[:, :3])
    x.requires_grad_(True)
    block(x, causal=True)[:, 2].sum().backward()
    assert (
        torch.equal(x.grad[:, 3:], torch.zeros_like(x.grad[:, 3:]))
        and x.grad[:, :3].abs().sum() > 0
    )


def test_block_padding_and_context_padding_have_no_influence():
    torch.manual_seed(3)
    block = TransformerBlock(8, 2, context_dim=5).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    context = torch.randn(2, 4, 5, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([3, 5]), 5)[:, 0, 0]
    context_mask = padding_mask(torch.tensor([1, 3]), 4)[:, 0, 0]
    out = block(x, context, key_mask=key_mask, context_mask=context_mask)
    x_changed = torch.where(key_mask[..., None], x, torch.randn_like(x))
    context_changed = torch.where(
        context_mask[..., None], context, torch.randn_like(context)
    )
    changed = block(
        x_changed, context_changed, key_mask=key_mask, context_mask=context_mask
    )
    real = key_mask[..., None].expand(-1, -1, 8)
    torch.testing.assert_close(changed[real], out[real], rtol=0, atol=1e-12)
    assert not torch.allclose(
        block(x, context_changed), block(x, context)
    )  # unmasked, padding counts


def test_dropout_acts_in_training_only():
    torch.manual_seed(4)
    block = TransformerBlock(8, 2, dropout=0.5)
    x = torch.randn(2, 5, 8)
    assert not torch.equal(block(x), block(x))  # two dropout draws
    block.eval()
    assert torch.equal(block(x), block(x))
    plain = TransformerBlock(8, 2)  # dropout 0: training and evaluation agree
    assert torch.equal(plain(x), plain.eval()(x))


def test_dropout_sits_on_every_sublayer_output():
    # replace the dropout by "drop everything": each branch then adds 0 and the block is the identity
    class DropAll(torch.nn.Module):
        def forward(self, h):
            return torch.zeros_like(h)

    torch.manual_seed(7)
    block = TransformerBlock(8, 2, context_dim=5, dropout=0.1)
    block.dropout = DropAll()
    x = torch.randn(2, 4, 8)
    assert torch.equal(block(x, torch.randn(2, 3, 5), causal=True), x)


def test_block_under_bf16_autocast():
    torch.manual_seed(5)
    block = TransformerBlock(8, 2, context_dim=6)
    x, context = torch.randn(2, 5, 8), torch.randn(2, 3, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x, context, causal=True)
    assert (
        out.shape == (2, 5, 8) and out.dtype == torch.float32
    )  # the residual stream stays float32
    torch.testing.assert_close(
        out, block(x, context, causal=True), atol=0.1, rtol=0.05
    )


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: TransformerBlock(10, 4),
            ValueError,
            "dim must be divisible by heads",
        ),
        (lambda: TransformerBlock(0, 1), ValueError, "dim must be an int >= 1"),
        (
            lambda: TransformerBlock(8, 2, mlp_ratio=0),
            ValueError,
            "mlp_ratio must lie in",
        ),
        (
            lambda: TransformerBlock(8, 2, mlp_ratio=float("nan")),
            ValueError,
            "mlp_ratio must be a finite",
        ),
        (
            lambda: TransformerBlock(8, 2, mlp_ratio=0.01),
            ValueError,
            "hidden width",
        ),
        (
            lambda: TransformerBlock(8, 2, mlp_ratio="4"),
            TypeError,
            "mlp_ratio must be a number",
        ),
        (
            lambda: TransformerBlock(8, 2, dropout=1.0),
            ValueError,
            "dropout must lie in",
        ),
        (
            lambda: TransformerBlock(8, 2, context_dim=2.5),
            TypeError,
            "context_dim must be an int",
        ),
    ],
)
def test_constructor_rejects_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_forward_rejects_bad_inputs():
    block, cross = TransformerBlock(8, 2), TransformerBlock(8, 2, context_dim=5)
    x, context = torch.randn(2, 3, 8), torch.randn(2, 4, 5)
    cases = [
        (
            lambda: block(torch.randn(2, 3, 6)),
            ValueError,
            r"x must have shape \(B, L, 8\)",
        ),
        (lambda: block(torch.randn(3, 8)), ValueError, "x must be a 3-d tensor"),
        (lambda: block(x.long()), TypeError, "floating-point"),
        (lambda: block(x, context), ValueError, "no cross-attention"),
        (
            lambda: block(x, context_mask=torch.ones(2, 4, dtype=torch.bool)),
            ValueError,
            "no cross-attention",
        ),
        (lambda: cross(x), ValueError, "pass context"),
        (
            lambda: cross(x, torch.randn(2, 4, 6)),
            ValueError,
            r"context must have shape \(2, L, 5\)",
        ),
        (
            lambda: cross(
                x, context, context_mask=torch.ones(2, 3, dtype=torch.bool)
            ),
            ValueError,
            r"key_mask must have shape \(2, 4\)",
        ),
        (
            lambda: block(x, key_mask=torch.ones(2, 3)),
            TypeError,
            "key_mask must be a bool tensor",
        ),
        (
            lambda: block(x, key_mask=torch.ones(2, 4, dtype=torch.bool)),
            ValueError,
            r"key_mask must have shape \(2, 3\)",
        ),
        (lambda: block(x, causal="yes"), TypeError, "causal must be True or False"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_causal_mask_helper_matches_the_blocks_notion_of_causality():
    # the block's causal=True equals an explicit mask through the reference: guards the mask's direction
    torch.manual_seed(6)
    block = TransformerBlock(8, 2).double()
    randomise(block)
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    h = F.layer_norm(
        x, (8,), block.attention_norm.weight, block.attention_norm.bias
    )
    explicit = reference_attention(block.attention, h, h, causal_mask(4))
    torch.testing.assert_close(
        block.attention(h, causal=True), explicit, rtol=1e-10, atol=1e-10
    )
