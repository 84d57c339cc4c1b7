"""The measured results the chapters read: every stored file loads and says how it was made,
an unknown name is refused, and a built wheel carries the files (Colab installs one)."""

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minigen import results

# what every file written by a benchmark's --json says about its run
PROVENANCE = {"command", "cpu", "torch", "threads", "recipe", "runs"}


def test_every_stored_result_loads_with_its_provenance_and_runs():
    assert "diffusion_seeds_recipe" in results.names()
    for name in results.names():
        stored = results.load(name)
        assert PROVENANCE <= stored.keys(), name
        assert stored["command"].startswith("benchmarks/"), name
        assert stored["runs"] and all("seed" in run for run in stored["runs"]), name


def test_an_unknown_result_is_refused_with_the_names_stored():
    with pytest.raises(ValueError, match="diffusion_seeds_recipe"):
        results.load("no such result")


def test_a_built_wheel_carries_the_results(tmp_path):
    root = Path(results.__file__).parents[
        2
    ]  # a copy: the build leaves build/ behind
    source = tmp_path / "source"
    shutil.copytree(root / "minigen", source / "minigen")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps"]
    command += ["--no-build-isolation", "--quiet", "--wheel-dir", str(tmp_path)]
    subprocess.run(command, check=True)
    (wheel,) = tmp_path.glob("minigen-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    for name in results.names():
        assert f"minigen/results/{name}.json" in packed, name


def test_run_record_names_the_script_machine_and_recipe(monkeypatch):
    import argparse

    import torch

    from minigen.core.runtime import cpu_name, cpu_supports_bf16

    argv = [
        "/somewhere/benchmarks/speed.py",
        "--seeds",
        "0",
        "1",
        "--json",
        "a.json",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    options = argparse.Namespace(seeds=[0, 1], json=Path("out/a.json"), lr=2e-3)
    record = results.run_record(options)
    assert record == {
        "command": "benchmarks/speed.py --seeds 0 1 --json a.json",
        "cpu": cpu_name(),
        "bf16 instructions": cpu_supports_bf16(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": {"seeds": [0, 1], "json": "out/a.json", "lr": 2e-3},
    }
    assert PROVENANCE - {"runs"} <= record.keys()
    json.dumps(record)  # what --json writes: every value serialisable


def test_run_record_refuses_what_is_not_parsed_options():
    with pytest.raises(TypeError, match="options"):
        results.run_record({"seeds": [0]})
