import random
import re

import numpy as np
import pytest
import torch

from minigen.core.runtime import (Precision, choose_precision, cpu_supports_bf16,
    default_device, provenance, seed_everything)

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_default_device_is_cuda_exactly_when_available():
    assert (default_device().type == "cuda") == torch.cuda.is_available()


@pytest.mark.parametrize("dtype, name", [(torch.bfloat16, "bf16"), (torch.float16, "fp16"), (torch.float32, "fp32")])
def test_precision_name_and_scaler_only_for_fp16(dtype, name):
    precision = Precision(CPU, dtype)
    assert precision.name == name
    assert precision.grad_scaler().is_enabled() == (dtype is torch.float16)


def test_bf16_autocast_runs_matmuls_in_bf16_on_cpu():
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with Precision(CPU, torch.bfloat16).autocast():
        assert (a @ b).dtype is torch.bfloat16
    with Precision(CPU, torch.float32).autocast():
        assert (a @ b).dtype is torch.float32


def test_precision_rejects_other_dtypes_and_device_strings():
    with pytest.raises(ValueError, match="float64"):
        Precision(CPU, torch.float64)
    with pytest.raises(TypeError, match="torch.device"):
        Precision("cpu", torch.float32)


def test_cpu_default_follows_hardware_bf16_support():
    expected = "bf16" if cpu_supports_bf16() else "fp32"
    assert choose_precision("cpu").name == expected


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_dtype_override_on_cpu(dtype):
    precision = choose_precision("cpu", dtype)
    assert precision.name == dtype and precision.device == CPU


def test_fp16_on_cpu_is_refused_with_an_explanation():
    with pytest.raises(ValueError, match="fp16 on the CPU.*'bf16'"):
        choose_precision("cpu", "fp16")


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="bf16, fp16, fp32.*'float16'"):
        choose_precision("cpu", "float16")


@needs_cuda
def test_cuda_default_is_bf16_or_fp16_with_scaler():
    precision = choose_precision("cuda")
    major, _ = torch.cuda.get_device_capability()
    assert precision.name == ("bf16" if major >= 8 else "fp16")
    assert precision.grad_scaler().is_enabled() == (precision.name == "fp16")
    a = torch.randn(8, 8, device="cuda")
    with precision.autocast():
        assert (a @ a).dtype is precision.dtype


def test_seed_everything_repeats_all_three_generators():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first
    seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)])
def test_seed_everything_validates(seed, error):
    with pytest.raises(error):
        seed_everything(seed)


def test_provenance_states_profile_device_precision_versions_time(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "cpu")
    line = provenance(Precision(CPU, torch.bfloat16))
    assert line.startswith("profile cpu · device cpu (")
    assert f"{torch.get_num_threads()} threads" in line
    assert "precision bf16" in line
    assert f"torch {torch.__version__}" in line
    assert re.search(r"minigen \S+", line)
    assert re.search(r"Python 3\.\d+\.\d+", line)
    assert re.search(r"wall time \d+(\.\d)? (s|min)", line)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC$", line)


def test_provenance_uses_the_default_precision(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "smoke")
    assert f"precision {choose_precision().name}" in provenance()
    assert provenance().startswith("profile smoke")
