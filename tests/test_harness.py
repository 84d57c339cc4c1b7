"""The sampling-and-scoring harness of chapter 5's notebook and benchmark: range conversions, scene batches
and label requests by hand, batched guided sampling against the samplers called directly (and against a model
whose samples are known exactly), scores read by an oracle that knows the truth."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minigen.data.shapes import ShapesWorld
from minigen.diffusion import NoiseSchedule, SamplerOptions, ddim_sample
from minigen.eval import harness
from minigen.eval.metrics import (
    frechet_interval,
    frechet_oracle_distance,
    oracle_features,
    wilson_interval,
)
from minigen.models.oracle import Oracle

WORLD = ShapesWorld(max_objects=1)


pytestmark = pytest.mark.usefixtures("one_thread")


# --- ranges, batches, requests -----------------------------------------------------------------------------


def test_range_conversions_are_inverse_and_clamp():
    images = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    x = harness.to_model_range(images)
    assert torch.allclose(x, 2 * images - 1) and x.min() >= -1 and x.max() <= 1
    back = harness.to_unit_range(x)
    assert back.dtype == torch.float32 and torch.allclose(
        back, images.float(), atol=1e-7
    )
    assert harness.to_unit_range(
        torch.tensor([-3.0, -1.0, 0.0, 0.5, 2.0])
    ).tolist() == [0.0, 0.0, 0.5, 0.75, 1.0]
    with pytest.raises(TypeError, match="floating-point"):
        harness.to_unit_range(torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        harness.to_model_range([0.5])


def test_scene_batches_are_the_scenes_of_the_step_with_their_first_object():
    batches = harness.scene_batches(WORLD, batch_size=4, split="test")
    x0, labels = batches(2)
    scenes = WORLD.scenes(range(8, 12), split="test")
    assert torch.equal(x0, scenes.images * 2 - 1)
    assert labels.tolist() == [
        [scenes.shape[i, 0].item(), scenes.colour[i, 0].item()] for i in range(4)
    ]
    assert torch.equal(harness.first_object_labels(scenes), labels)
    assert torch.equal(batches(2)[0], x0) and not torch.equal(
        batches(3)[0], x0
    )  # a pure function of the step
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        batches(-1)
    with pytest.raises(TypeError, match="ShapesWorld"):
        harness.scene_batches("shapes")
    for split in (
        "nonsense",
        "",
        None,
        3,
    ):  # checked up front, not at the first step
        with pytest.raises(ValueError, match="split must be one of 'train'"):
            harness.scene_batches(WORLD, split=split)


def test_label_requests_take_every_pair_in_turn():
    shapes, colours = len(WORLD.shapes), len(WORLD.colours)
    requests = harness.label_requests(WORLD, 2 * shapes * colours)
    assert requests[: shapes + 1].tolist() == [[i, 0] for i in range(shapes)] + [
        [0, 1]
    ]
    pairs = requests.unique(dim=0, return_counts=True)
    assert len(pairs[0]) == shapes * colours and (pairs[1] == 2).all()
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        harness.label_requests(WORLD, 0)


# --- sampling ----------------------------------------------------------------------------------------------


class LabelImage(nn.Module):
    """An x0-predictor that paints the whole (1, 2, 2) image with 0.25 label - 0.5; the NULL label (9) paints 0.
    DDIM's and DDPM's last step return the x0 read, so every sample is known exactly."""

    in_channels, image_size = 1, 2

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def null_cond(self, batch, device=None):
        return torch.full((batch, 1), 9, device=device)

    def forward(self, x, t, cond=None):
        cond = self.null_cond(len(x)) if cond is None else cond
        value = torch.where(cond == 9, 0.0, 0.25 * cond.float() - 0.5)  # (B, 1)
        return value.view(-1, 1, 1, 1).expand_as(x) + self.dummy


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sampled_images_follow_their_conditions_through_the_batches(sampler):
    schedule, model = NoiseSchedule.cosine(20), LabelImage()
    labels = torch.tensor([[0], [1], [2], [3], [4]])
    for guidance, scale in [(None, 1.0), (1.0, 1.0), (2.0, 2.0)]:
        options = SamplerOptions("x0", cond=labels, guidance=guidance, clip=None)
        images, seconds = harness.sample_images(
            model, schedule, 5, options, sampler=sampler, steps=4, batch_size=2
        )
        expected = ((scale * (0.25 * labels.float() - 0.5) + 1) / 2).clamp(
            0, 1
        )  # guided: null + w (cond - null)
        assert images.shape == (5, 1, 2, 2) and seconds > 0
        assert torch.allclose(
            images, expected.view(5, 1, 1, 1).expand(5, 1, 2, 2), atol=1e-5
        )
    unconditional, _ = harness.sample_images(
        model, schedule, 3, SamplerOptions("x0"), sampler=sampler, steps=4
    )
    assert torch.allclose(unconditional, torch.full((3, 1, 2, 2), 0.5), atol=1e-6)


class HalfEps(nn.Module):
    in_channels, image_size = 2, 4

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t):
        return 0.5 * x + self.dummy


def test_batches_share_one_generator_and_match_the_sampler_called_directly():
    schedule, model = NoiseSchedule.linear(30), HalfEps()
    options = SamplerOptions(clip=None)
    images, _ = harness.sample_images(
        model, schedule, 7, options, steps=5, eta=0.5, batch_size=3, seed=4
    )
    generator = torch.Generator().manual_seed(4)
    chunks = [
        ddim_sample(
            model, schedule, (size, 2, 4, 4), 5, 0.5, options, generator=generator
        )
        for size in (3, 3, 1)
    ]
    expected = ((torch.cat(chunks) + 1) / 2).clamp(0, 1)
    assert torch.equal(images, expected)
    again, _ = harness.sample_images(
        model, schedule, 7, options, steps=5, eta=0.5, batch_size=3, seed=4
    )
    other, _ = harness.sample_images(
        model, schedule, 7, options, steps=5, eta=0.5, batch_size=3, seed=5
    )
    assert torch.equal(images, again) and not torch.allclose(images, other)


def test_sample_images_rejects_bad_input():
    schedule, model = NoiseSchedule.linear(10), LabelImage()
    with pytest.raises(ValueError, match="sampler must be one of"):
        harness.sample_images(model, schedule, 2, sampler="euler")
    with pytest.raises(ValueError, match="one condition per sample"):
        harness.sample_images(
            model,
            schedule,
            3,
            SamplerOptions("x0", cond=torch.zeros(2, 1, dtype=torch.long)),
        )
    with pytest.raises(TypeError, match="image shape"):
        harness.sample_images(nn.Linear(2, 2), schedule, 2)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        harness.sample_images(model, schedule, 2, batch_size=0)
    with pytest.raises(TypeError, match="NoiseSchedule"):
        harness.sample_images(model, "cosine", 2)


# --- scores ------------------------------------------------------------------------------------------------


class TruthOracle(Oracle):
    """Reads the truth of the scenes it was given (one-hot logits), whatever images it is shown."""

    def __init__(self, world, scenes):
        super().__init__(world, width=8)
        self.targets = scenes.cell_targets()

    def forward(self, images):
        classes = {
            "shape": len(self.world.shapes) + 1,
            "colour": len(self.world.colours),
            "size": len(self.world.sizes),
        }
        return {
            name: 10.0
            * F.one_hot(self.targets[name][: len(images)].clamp(min=0), n).float()
            for name, n in classes.items()
        }


def test_score_images_reads_validity_objects_and_the_frechet_distance():
    torch.manual_seed(0)
    scenes = WORLD.scenes(40, split="test")
    judge = TruthOracle(WORLD, scenes)
    scores = harness.score_images(judge, scenes.images, scenes.images)
    assert scores["valid"] == 1.0 and scores["objects"] == 1.0
    other = 1 - scenes.images  # another distribution of images
    fd = harness.score_images(judge, scenes.images, other)["fd"]
    assert fd == pytest.approx(
        frechet_oracle_distance(judge, other, scenes.images), rel=1e-6
    )
    assert abs(scores["fd"]) < 1e-3 * fd  # a set against itself: 0
    assert scores["valid_interval"] == wilson_interval(40, 40)
    assert scores["tv"] == {"shape": 0.0, "colour": 0.0, "size": 0.0, "cell": 0.0}
    low, high = harness.score_images(judge, scenes.images, other)["fd_interval"]
    assert low < fd < high
    assert (low, high) == frechet_interval(
        oracle_features(judge, other), oracle_features(judge, scenes.images)
    )


def test_request_scores_count_the_requests_read_back_and_the_spread_within_each():
    torch.manual_seed(0)
    scenes = WORLD.scenes(12, split="test")
    judge = TruthOracle(WORLD, scenes)
    requests = harness.first_object_labels(scenes).clone()
    requests[:3, 0] = (requests[:3, 0] + 1) % len(
        WORLD.shapes
    )  # three shapes asked for, not drawn
    requests[3, 1] = (requests[3, 1] + 1) % len(WORLD.colours)  # one colour
    scores = harness.request_scores(judge, scenes.images, requests)
    assert scores["shape"] == pytest.approx(9 / 12) and scores[
        "colour"
    ] == pytest.approx(11 / 12)
    assert scores["valid"] == 1.0
    assert scores["shape_interval"] == wilson_interval(9, 12)
    assert scores["colour_interval"] == wilson_interval(11, 12)
    assert scores["valid_interval"] == wilson_interval(12, 12)
    twins = scenes.images[[0, 0, 5, 5]]  # two requests, identical samples each
    twin_requests = torch.tensor([[0, 0], [0, 0], [1, 1], [1, 1]])
    assert harness.request_scores(judge, twins, twin_requests)[
        "spread"
    ] == pytest.approx(0.0, abs=1e-10)
    features = oracle_features(judge, scenes.images[[0, 1, 5, 6]])
    by_hand = (
        (features[0] - features[1]).square().sum() / 2
        + (features[2] - features[3]).square().sum() / 2
    ) / 2
    mixed = harness.request_scores(
        judge, scenes.images[[0, 1, 5, 6]], twin_requests
    )["spread"]
    assert (
        mixed == pytest.approx(by_hand.item(), rel=1e-4) and mixed > 0
    )  # the variance of two is (a - b)^2 / 2
    lonely = harness.request_scores(judge, scenes.images[:2], twin_requests[1:3])[
        "spread"
    ]
    assert lonely != lonely  # NaN: no request has two samples
    with pytest.raises(ValueError, match=r"requests must be \(4, 2\)"):
        harness.request_scores(judge, twins, twin_requests[:3])


class LookupOracle(TruthOracle):
    """Reads the truth of whichever of its scenes each image is (nearest image)."""

    def __init__(self, world, scenes):
        super().__init__(world, scenes)
        self.images = scenes.images

    def forward(self, images):
        nearest = torch.cdist(images.flatten(1), self.images.flatten(1)).argmin(1)
        logits = super().forward(self.images)
        return {name: value[nearest] for name, value in logits.items()}


def test_score_images_reports_the_total_variation_of_each_attribute():
    scenes = WORLD.scenes(range(70), split="test")
    first, second = scenes[:40], scenes[40:]
    judge = LookupOracle(WORLD, scenes)
    tv = harness.score_images(judge, first.images, second.images)["tv"]

    def share(values, classes):  # of the single objects' attribute values
        return torch.bincount(values[:, 0], minlength=classes).double() / len(
            values
        )

    classes = {"shape": 5, "colour": 6, "size": 2, "cell": 9}
    assert (len(WORLD.shapes), len(WORLD.colours), len(WORLD.sizes)) == (5, 6, 2)
    for name, count in classes.items():
        a = share(getattr(first, name), count)
        b = share(getattr(second, name), count)
        expected = 0.5 * (a - b).abs().sum().item()
        assert expected > 0 and tv[name] == pytest.approx(expected), name


class PaintLabels(nn.Module):
    """An x0-predictor of (3, 32, 32) images painted 0.1 (shape + colour) - 0.5; the NULL labels paint 0."""

    in_channels, image_size = 3, 32

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def null_cond(self, batch, device=None):
        return torch.full((batch, 2), -1, device=device)

    def forward(self, x, t, cond=None):
        cond = self.null_cond(len(x)) if cond is None else cond
        value = torch.where(cond[:, 0] < 0, 0.0, 0.1 * cond.sum(1).float() - 0.5)
        return value.view(-1, 1, 1, 1).expand_as(x) + self.dummy


def test_model_quality_scores_unconditional_and_guided_samples_of_one_seed():
    scenes = WORLD.scenes(range(10), split="test")
    judge, model = LookupOracle(WORLD, scenes), PaintLabels()
    schedule = NoiseSchedule.cosine(20)
    draw = dict(steps=3, eta=0.5, seed=3)
    got = harness.model_quality(
        model, schedule, judge, scenes.images, objective="x0", guidance=3.0, **draw
    )
    plain, _ = harness.sample_images(
        model, schedule, 10, SamplerOptions("x0"), **draw
    )
    requests = harness.label_requests(WORLD, 10)
    asked = SamplerOptions("x0", cond=requests, guidance=3.0)
    guided, _ = harness.sample_images(model, schedule, 10, asked, **draw)
    expected = harness.score_images(judge, plain, scenes.images)
    expected_guided = harness.request_scores(judge, guided, requests)
    assert got.keys() == expected.keys() | {"guided"}
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, nan_ok=True), name
    for name, value in expected_guided.items():
        assert got["guided"][name] == pytest.approx(value, nan_ok=True), name
    other = harness.model_quality(
        model, schedule, judge, scenes.images, objective="x0", guidance=1.0, **draw
    )  # another scale, other guided samples
    assert other["guided"]["spread"] != pytest.approx(got["guided"]["spread"])
    with pytest.raises(ValueError, match="real must be"):
        harness.model_quality(model, schedule, judge, scenes.images[0])
