import random
import re

import numpy as np
import pytest
import torch
from torch import nn

from minigen.core.runtime import (
    Precision,
    as_device,
    choose_precision,
    cpu_supports_bf16,
    cuda_supports_bf16,
    default_device,
    eval_mode,
    provenance,
    seed_everything,
    train_mode,
)

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def test_default_device_is_cuda_exactly_when_available():
    assert (default_device().type == "cuda") == torch.cuda.is_available()


@pytest.mark.parametrize(
    "dtype, name",
    [(torch.bfloat16, "bf16"), (torch.float16, "fp16"), (torch.float32, "fp32")],
)
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


def test_environment_overrides_the_default_but_not_an_explicit_dtype(monkeypatch):
    other = "fp32" if cpu_supports_bf16() else "bf16"
    monkeypatch.setenv("MINIGEN_DTYPE", f" {other.upper()} ")
    assert choose_precision("cpu").name == other
    assert choose_precision("cpu", "fp32").name == "fp32"
    assert f"precision {other}" in provenance()
    monkeypatch.setenv("MINIGEN_DTYPE", "")
    assert choose_precision("cpu").name == (
        "bf16" if cpu_supports_bf16() else "fp32"
    )


def test_a_bad_environment_dtype_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("MINIGEN_DTYPE", "half")
    with pytest.raises(ValueError, match="MINIGEN_DTYPE must be one of.*'half'"):
        choose_precision("cpu")
    monkeypatch.setenv("MINIGEN_DTYPE", "fp16")
    with pytest.raises(ValueError, match="fp16 on the CPU"):
        choose_precision("cpu")


def test_fp16_on_cpu_is_refused_with_an_explanation():
    with pytest.raises(ValueError, match="fp16 on the CPU.*'bf16'"):
        choose_precision("cpu", "fp16")


def test_unknown_dtype_is_refused():
    with pytest.raises(
        ValueError,
        match="dtype must be one of 'bf16', 'fp16', 'fp32', got str 'float16'",
    ):
        choose_precision("cpu", "float16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        choose_precision("cpu", torch.float16)


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


@pytest.mark.parametrize(
    "seed, error",
    [(-1, ValueError), (2**32, ValueError), (1.5, TypeError), (True, TypeError)],
)
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
    lines = line.splitlines()
    assert len(lines) > 1 and all(len(part) <= 84 for part in lines)
    assert " · ".join(part.removesuffix(" ·") for part in lines).count(" · ") == 7


def test_provenance_uses_the_default_precision(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROFILE", "smoke")
    assert f"precision {choose_precision().name}" in provenance()
    assert provenance().startswith("profile smoke")


# --- eval_mode and train_mode ---


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


def dropout_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 1))


def test_eval_mode_switches_off_dropout_inside_and_restores_after():
    torch.manual_seed(0)
    model, x = dropout_net().train(), torch.ones(64, 4)
    with eval_mode(model):
        assert modes(model) == [False] * 4
        assert torch.equal(model(x), model(x))  # dropout off: deterministic
    assert modes(model) == [True] * 4
    assert not torch.equal(model(x), model(x))  # dropout back on


def test_eval_mode_restores_the_mode_on_error():
    model = dropout_net().train()
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert modes(model) == [True] * 4


def test_eval_mode_takes_several_models_and_restores_each_own_mode():
    training, evaluating = dropout_net().train(), dropout_net().eval()
    mixed = dropout_net().train()
    mixed[1].eval()  # a submodule kept in eval on purpose
    before = [modes(m) for m in (training, evaluating, mixed)]
    with eval_mode(training, evaluating, mixed):
        assert not any(any(modes(m)) for m in (training, evaluating, mixed))
    assert [modes(m) for m in (training, evaluating, mixed)] == before


def test_nested_modes_unwind_in_order():
    model = dropout_net().eval()
    with train_mode(model):
        assert model.training
        with eval_mode(model):
            assert not model.training
            with train_mode(model):
                assert all(modes(model))
            assert not any(modes(model))
        assert all(modes(model))
    assert not any(modes(model))


def test_modes_reject_what_is_not_a_model():
    with pytest.raises(
        TypeError, match=r"models\[1\] must be an nn.Module, got str"
    ):
        with eval_mode(dropout_net(), "model"):
            pass
    with pytest.raises(
        TypeError, match="must be a model instance, got the class Linear"
    ):
        with train_mode(nn.Linear):
            pass


# --- devices ---


def test_as_device_accepts_names_and_devices_and_names_mistakes():
    assert as_device("cpu") == CPU and as_device(CPU) == CPU
    with pytest.raises(ValueError, match="device must name a torch device.*'gpu'"):
        as_device("gpu")
    with pytest.raises(
        TypeError, match="device must be a device name or torch.device, got int 0"
    ):
        as_device(0)
    with pytest.raises(ValueError, match="device must name a torch device"):
        choose_precision("graphics card")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            choose_precision("cuda")


def test_precision_and_provenance_check_their_types():
    with pytest.raises(
        TypeError, match="dtype must be a torch.dtype, got str 'bf16'"
    ):
        Precision(CPU, "bf16")
    with pytest.raises(TypeError, match="precision must be Precision"):
        provenance("bf16")


def test_cuda_supports_bf16_is_false_off_the_gpu_and_checks_its_device():
    # a CPU is no bf16 GPU, whatever its own bf16 instructions (cpu_supports_bf16)
    assert cuda_supports_bf16(CPU) is False and cuda_supports_bf16("cpu") is False
    with pytest.raises(
        TypeError, match="device must be a device name or torch.device"
    ):
        cuda_supports_bf16(42)
    with pytest.raises(ValueError, match="device must name a torch device"):
        cuda_supports_bf16("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            cuda_supports_bf16("cuda")


@needs_cuda
def test_cuda_supports_bf16_follows_the_compute_capability():
    major, _ = torch.cuda.get_device_capability()
    assert cuda_supports_bf16("cuda") is (major >= 8)
    assert cuda_supports_bf16(torch.device("cuda", 0)) is (major >= 8)


def test_cpu_name_is_the_model_name_the_system_reports_and_the_device_description_holds_it():
    import platform
    from pathlib import Path

    from minigen.core.runtime import cpu_name, device_description

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    reported = [
        line.split(":", 1)[1].strip()
        for line in lines
        if line.startswith("model name")
    ]
    assert cpu_name() == (
        reported[0] if reported else platform.processor() or platform.machine()
    )
    assert cpu_name() in device_description(torch.device("cpu"))
