"""The cascade's upsampler: its blur agrees with torchvision's, its downsampling with
the world's own low-resolution renders, the augmentation stays within its bounds,
the network reads its low-resolution condition, and load_upsampler trains once,
then loads the same model."""

import dataclasses
import math

import pytest
import torch
import torchvision.transforms.functional as TF

from minigen.data.shapes import ShapesWorld
from minigen.models.unet import UNet
from minigen.pipelines import cascade

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = cascade.UpsamplerRecipe(steps=3, batch=4, channels=8)
WORLD = ShapesWorld(resolution=24)  # load_upsampler trains at 48x48


@pytest.mark.parametrize("sigma", [0.3, 0.6, 1.0, 2.5])
def test_blur_is_torchvisions_gaussian_blur(sigma):
    images = torch.rand(2, 3, 16, 16)
    size = 2 * math.ceil(3 * sigma) + 1
    expected = TF.gaussian_blur(images, [size, size], [sigma, sigma])
    got = cascade.gaussian_blur(images, torch.tensor([sigma, sigma]))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_blur_uses_each_images_own_width_and_zero_leaves_it():
    images = torch.rand(3, 3, 12, 12)
    got = cascade.gaussian_blur(images, torch.tensor([0.0, 0.5, 1.5]))
    torch.testing.assert_close(got[0], images[0])
    for i, sigma in [(1, 0.5), (2, 1.5)]:
        alone = cascade.gaussian_blur(images[i : i + 1], torch.tensor([sigma]))
        torch.testing.assert_close(got[i], alone[0])
    assert (got[2] - images[2]).abs().mean() > (got[1] - images[1]).abs().mean()


@pytest.mark.parametrize("sigmas", [[0.5], [1.0, -0.1], [float("nan"), 1.0]])
def test_blur_rejects_widths_that_are_not_one_per_image_and_nonnegative(sigmas):
    with pytest.raises((ValueError, TypeError), match="sigmas"):
        cascade.gaussian_blur(torch.rand(2, 3, 8, 8), torch.tensor(sigmas))


def test_downsampling_is_how_the_world_renders_at_half_the_size():
    world = ShapesWorld(resolution=32)
    high = dataclasses.replace(world, resolution=64).scenes(8).images
    low = cascade.downsample(high)
    blocks = high.unfold(2, 2, 2).unfold(3, 2, 2).mean((-1, -2))  # 2x2 means
    torch.testing.assert_close(low, blocks)
    assert (low - world.scenes(8).images).abs().mean() < 1e-3


def test_degradation_stays_within_its_bounds_and_follows_the_generator():
    low = torch.rand(64, 3, 8, 8)
    draw = lambda blur, noise: cascade.degrade(  # noqa: E731
        low, blur, noise, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(draw(0.6, 0.02), draw(0.6, 0.02))
    assert (draw(1e-9, 0.05) - low).std() < 0.05  # noise of std U(0, 0.05)
    assert (draw(1e-9, 0.05) - low).std() > 0.015
    blurred = draw(1.0, 1e-9)
    assert (blurred - low).abs().max() > 0.1  # some images blurred
    assert blurred.std() < low.std()  # blur smooths


def test_unet_out_channels_changes_only_the_last_layer():
    torch.manual_seed(0)
    net = UNet(in_channels=6, out_channels=3, base_channels=8, image_size=16)
    assert net(torch.randn(2, 6, 16, 16), torch.tensor([1, 2])).shape == (
        2,
        3,
        16,
        16,
    )
    assert net.out[-1].weight.shape[:2] == (3, 8)
    with pytest.raises(ValueError, match="out_channels"):
        UNet(out_channels=0)


def test_the_network_reads_its_low_resolution_condition():
    torch.manual_seed(0)
    model = cascade.SuperResUNet(image_size=16, base_channels=8)
    torch.nn.init.normal_(model.unet.out[-1].weight, std=0.1)  # not zero
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    low = torch.rand(2, 3, 8, 8)
    out = model(x, t, low)
    assert out.shape == (2, 3, 16, 16)
    changed = model(x, t, low.flip(0))
    assert ((out - changed).abs().amax((1, 2, 3)) > 1e-4).all()
    with pytest.raises(ValueError, match="low must be 2 images"):
        model(x, t, torch.rand(2, 3, 16, 16))


def test_upsampler_trains_once_then_loads_the_same_model(tmp_path):
    path = tmp_path / "up.pt"
    model = cascade.load_upsampler(TINY, WORLD, path, device="cpu", progress=False)
    assert model.image_size == 48 and model.history.completed_steps == TINY.steps
    again = cascade.load_upsampler(TINY, WORLD, path, device="cpu", progress=False)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    low = WORLD.scenes(3).images
    images = cascade.upsample(model, low, steps=2)
    assert images.shape == (3, 3, 48, 48) and 0 <= images.min() <= images.max() <= 1
    other = dataclasses.replace(TINY, seed=1)
    with pytest.raises(ValueError, match="other settings"):
        cascade.load_upsampler(other, WORLD, path, device="cpu", progress=False)


def test_the_training_pairs_are_the_scenes_and_their_degraded_halves():
    world = dataclasses.replace(WORLD, resolution=48)
    recipe = dataclasses.replace(TINY, max_blur=1e-9, max_noise=1e-9)
    high, low = cascade.upsampler_batches(world, recipe)(1)
    torch.testing.assert_close(high, 2 * world.scenes(range(4, 8)).images - 1)
    torch.testing.assert_close(low, cascade.downsample(high), atol=1e-6, rtol=0)


def test_upsample_rejects_images_outside_the_unit_range():
    model = cascade.SuperResUNet(image_size=16, base_channels=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cascade.upsample(model, torch.full((1, 3, 8, 8), 2.0))
