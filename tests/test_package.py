"""The package's shape: the lazy public API, the import rules between layers, light imports."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import minigen

PACKAGE = Path(minigen.__file__).parent

# Which subpackages each layer may import from (besides itself): lower layers never import
# the chapters' models, the evaluation or the figures.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "ops": {"core"},
    "nn": {"core", "ops"},
    "diffusion": {"core", "nn"},
    "models": {"core", "data", "ops", "nn", "diffusion", "eval", "tokenizers"},
    "eval": {"core", "data", "diffusion", "models"},
    "viz": {"core", "data", "ops"},
    "exercises": {"core"},
    "results": {"core"},
    "tokenizers": {"core"},
    "pipelines": {
        "core",
        "data",
        "ops",
        "nn",
        "diffusion",
        "eval",
        "models",
        "tokenizers",
    },
}


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every `from minigen... import` and `import minigen...`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "minigen"
        ):
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [
                (alias.name, [])
                for alias in node.names
                if alias.name.startswith("minigen")
            ]
    return found


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


@pytest.mark.parametrize("name", sorted(minigen._HOME))
def test_every_public_name_resolves_from_its_module(name):
    value = getattr(minigen, name)
    module = minigen._HOME[name]
    assert value is getattr(sys.modules[f"minigen.{module}"], name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        minigen.nonexistent  # noqa: B018


def test_dir_lists_the_public_api_and_the_subpackages():
    listed = dir(minigen)
    assert {"UNet", "show", "ShapesWorld", "diffusion", "nn", "core"} <= set(listed)


def test_subpackages_follow_the_layering():
    offending = []
    for path in modules():
        layer = path.relative_to(PACKAGE).parts[0]
        for module, _ in imports_of(path):
            parts = module.split(".")
            if len(parts) < 2 or parts[1] == layer:
                continue
            if parts[1] not in ALLOWED[layer]:
                offending.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not offending, "\n".join(offending)


def test_no_module_imports_another_modules_private_names():
    offending = [
        f"{path.relative_to(PACKAGE)}: {module}.{name}"
        for path in modules()
        for module, names in imports_of(path)
        for name in names
        if name.startswith("_")
        and module
        != ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    ]
    assert not offending, "\n".join(offending)


def test_models_do_not_import_each_other():
    offending = [
        f"{path.name} imports {module}"
        for path in (PACKAGE / "models").glob("*.py")
        for module, _ in imports_of(path)
        if module.startswith("minigen.models.")
        and module != f"minigen.models.{path.stem}"
    ]
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize(
    "module",
    [
        "minigen",
        "minigen.diffusion",
        "minigen.nn.transformer",
        "minigen.models.unet",
        "minigen.core.train",
    ],
)
def test_importing_the_compute_code_pulls_in_no_plotting_or_widgets(module):
    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('matplotlib', 'ipywidgets') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", (
        f"import {module} loaded {result.stdout.strip()}"
    )
