"""Tests for minigen.unet: the time embedding against its closed form, the zero-initialised residual paths,
attention against PyTorch's reference, the U-Net's shapes, gradients, conditioning and input checks."""
import math

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from minigen.nn.residual import ResidualBlock
from minigen.nn.attention import SelfAttention2d
from minigen.models.unet import UNet
from minigen.nn.embeddings import timestep_embedding


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models are tiny: one thread avoids the cost of syncing threads on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def randomise_zero_parameters(module: torch.nn.Module, std: float = 0.1) -> None:
    """Give every all-zero parameter (the zero-initialised convolutions, the GroupNorm shifts) random values."""
    with torch.no_grad():
        for parameter in module.parameters():
            if not parameter.any():
                parameter.normal_(0, std)


def small_unet(**kwargs) -> UNet:
    config = dict(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), image_size=8, heads=2)
    return UNet(**{**config, **kwargs})


# --- timestep_embedding -------------------------------------------------------------------------------------

def test_timestep_embedding_matches_closed_form():
    t, dim, period = [0, 1, 7, 250, 999], 10, 10_000.0
    half = dim // 2
    expected = [[math.cos(step * period ** (-i / half)) for i in range(half)]
                + [math.sin(step * period ** (-i / half)) for i in range(half)] for step in t]
    embedding = timestep_embedding(torch.tensor(t), dim)
    assert embedding.shape == (len(t), dim) and embedding.dtype == torch.float32
    torch.testing.assert_close(embedding, torch.tensor(expected), atol=2e-4, rtol=0)


def test_timestep_embedding_float_times_and_custom_period():
    t = torch.tensor([0.5, 2.25], dtype=torch.float64)
    expected = [[math.cos(step * 100.0 ** (-i / 2)) for i in range(2)]
                + [math.sin(step * 100.0 ** (-i / 2)) for i in range(2)] for step in t.tolist()]
    torch.testing.assert_close(timestep_embedding(t, 4, max_period=100.0), torch.tensor(expected), atol=1e-6, rtol=0)


def test_timestep_embedding_separates_timesteps():
    embedding = timestep_embedding(torch.arange(50), 16)
    distances = torch.cdist(embedding, embedding) + torch.eye(50)  # the diagonal is each step with itself
    assert distances.min() > 1e-3


@pytest.mark.parametrize("dim", [7, 0])
def test_timestep_embedding_rejects_bad_dim(dim):
    with pytest.raises(ValueError):
        timestep_embedding(torch.arange(3), dim)


def test_timestep_embedding_rejects_non_vector_t():
    with pytest.raises(ValueError, match="1-d"):
        timestep_embedding(torch.zeros(2, 3), 8)


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
    assert (first - second).abs().amax(dim=(1, 2, 3)).min() > 1e-3  # every image changes


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
    assert not torch.allclose(layer(x), x)  # the test would be vacuous for the identity
    torch.testing.assert_close(layer(permuted).flatten(2), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_matches_scaled_dot_product_attention(heads):
    torch.manual_seed(heads)
    layer = SelfAttention2d(8, heads=heads)
    randomise_zero_parameters(layer)
    x = torch.randn(3, 8, 4, 5)
    with torch.no_grad():
        q, k, v = layer.qkv(layer.norm(x)).chunk(3, dim=1)
        q, k, v = (rearrange(z, "b (n d) h w -> b n (h w) d", n=heads) for z in (q, k, v))
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b n (h w) d -> b (n d) h w", h=4)
        expected = x + layer.proj_out(attended)
        torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SelfAttention2d(6, heads=4)


# --- UNet ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mults, blocks, attention", [
    ((1, 2), 1, (1,)), ((1, 2), 2, ()), ((1, 2, 2), 1, (2,)), ((1, 2, 2), 2, (0, 2)), ((2,), 1, ()),
])
def test_unet_shape_and_zero_output_at_init(mults, blocks, attention):
    torch.manual_seed(0)
    model = UNet(in_channels=2, base_channels=8, channel_mults=mults, blocks_per_level=blocks,
                 attention_levels=attention, image_size=8, heads=2)
    x = torch.randn(3, 2, 8, 8)
    out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(x))  # the zero-initialised output convolution
    randomise_zero_parameters(model)
    assert model(x, torch.tensor([0, 10, 999])).abs().amin(dim=(1, 2, 3)).min() > 0


@pytest.mark.parametrize("class_counts", [None, (3, 4)])
def test_unet_every_parameter_learns(class_counts):
    torch.manual_seed(0)
    model = small_unet(channel_mults=(1, 2, 2), attention_levels=(0, 2), class_counts=class_counts)
    randomise_zero_parameters(model)
    # every row of every embedding, NULL included, appears in the batch
    labels = None if class_counts is None else torch.tensor([[0, 0], [1, 1], [2, 2], [3, 3], [3, 4]])
    x, t, target = torch.randn(5, 3, 8, 8), torch.tensor([1, 50, 300, 999, 7]), torch.randn(5, 3, 8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.mse_loss(model(x, t, labels), target).backward()
    optimizer.step()
    optimizer.zero_grad()
    F.mse_loss(model(x, t, labels), target).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().amax() > 0, name
        if name.startswith("label_embeddings"):
            assert (parameter.grad.abs().amax(dim=1) > 0).all(), name  # every row, the NULL row included


def test_unet_labels_condition_the_output():
    torch.manual_seed(0)
    model = small_unet(class_counts=(5, 6))
    assert model.class_counts == (5, 6)
    randomise_zero_parameters(model)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([3, 400])
    null = model.null_labels(2)
    assert null.dtype == torch.long and null.tolist() == [[5, 6], [5, 6]]
    assert torch.equal(model(x, t), model(x, t, null))
    first, second = model(x, t, torch.tensor([[0, 1], [2, 3]])), model(x, t, torch.tensor([[4, 1], [2, 5]]))
    assert (first - second).abs().amax(dim=(1, 2, 3)).min() > 1e-5
    assert (first - model(x, t)).abs().amax() > 1e-5


def test_unet_scalar_timestep_is_broadcast():
    torch.manual_seed(0)
    model = small_unet()
    randomise_zero_parameters(model)
    x = torch.randn(3, 3, 8, 8)
    expected = model(x, torch.full((3,), 17))
    torch.testing.assert_close(model(x, 17), expected, atol=0, rtol=0)
    torch.testing.assert_close(model(x, torch.tensor(17)), expected, atol=0, rtol=0)
    assert not torch.allclose(model(x, 18), expected)


def test_unconditional_unet_rejects_labels():
    model = small_unet()
    assert model.class_counts is None
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.zeros(2, 1, dtype=torch.long))


@pytest.mark.parametrize("labels, error", [
    ([[0, 7], [1, 1]], ValueError),  # 7 > 6, past the NULL index of the second attribute
    ([[-1, 0], [1, 1]], ValueError),
    ([[6, 0], [1, 1]], ValueError),  # 6 > 5
    ([[0], [1]], ValueError),  # one column for two attributes
    ([[0, 0, 0], [1, 1, 1]], ValueError),
    ([[0, 0]], ValueError),  # one row for two images
    ([[0.0, 1.0], [1.0, 1.0]], TypeError),
])
def test_unet_rejects_bad_labels(labels, error):
    model = small_unet(class_counts=(5, 6))
    with pytest.raises(error):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor(labels))


def test_unet_accepts_the_largest_labels():
    model = small_unet(class_counts=(5, 6))
    assert model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), torch.tensor([[5, 6], [4, 5]])).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 1, 8, 8), (3, 8, 8), (2, 3, 8, 4)])
def test_unet_rejects_wrong_images(shape):
    with pytest.raises(ValueError, match="expects images"):
        small_unet()(torch.randn(shape), torch.tensor([1, 2]))


@pytest.mark.parametrize("t", [torch.tensor([1, 2, 3]), torch.tensor([[1], [2]])])
def test_unet_rejects_wrong_timesteps(t):
    with pytest.raises(ValueError, match="timestep"):
        small_unet()(torch.randn(2, 3, 8, 8), t)


@pytest.mark.parametrize("kwargs", [
    dict(image_size=10, channel_mults=(1, 2, 2)),  # 10 not divisible by 4
    dict(image_size=6, channel_mults=(1, 1, 1)),
    dict(attention_levels=(2,)),  # only levels 0, 1
    dict(channel_mults=()),
    dict(base_channels=7),
    dict(dropout=1.0),
    dict(class_counts=()),
    dict(class_counts=(0, 3)),
])
def test_unet_rejects_bad_configuration(kwargs):
    with pytest.raises(ValueError):
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
    torch.testing.assert_close(out.float(), model(x, torch.tensor([5, 600]), torch.tensor([[0], [2]])),
                               atol=0.1, rtol=0.1)


def test_unet_parameters_grow_with_the_square_of_the_width():
    def count(model: UNet) -> int:
        return sum(parameter.numel() for parameter in model.parameters())

    ratio = count(UNet(base_channels=32)) / count(UNet(base_channels=16))
    assert 3.5 < ratio < 4.5
