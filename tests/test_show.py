import inspect
import sys
import textwrap

import pytest
import torch

import minigen.core.show
from minigen.core.show import Source, show
from minigen.core.train import EMA, History


@pytest.mark.parametrize(
    "obj",
    [show, Source, History, EMA.update, minigen.core.show],
    ids=lambda o: o.__name__,
)
def test_source_is_the_dedented_getsource(obj):
    source = show(obj)
    expected = inspect.getsource(obj)
    assert str(source) == repr(source) == source.code
    indent = len(expected) - len(expected.lstrip(" "))
    assert not source.code.startswith(" ")  # methods lose their indent
    # and nothing else changes
    assert textwrap.indent(source.code, " " * indent) == expected


def test_markdown_is_a_fenced_python_block():
    markdown = show(History.smoothed)._repr_markdown_()
    lines = markdown.splitlines()
    assert lines[0] == "```python" and lines[-1] == "```"
    assert "\n".join(lines[1:-1]) + "\n" == show(History.smoothed).code


def test_fence_outgrows_backticks_in_the_code():
    markdown = Source("x = '```'\n")._repr_markdown_()
    assert markdown.startswith("````python\n") and markdown.endswith("\n````\n")


@pytest.mark.parametrize("builtin", [len, torch.add, int, sys, str.join])
def test_builtins_have_no_source(builtin):
    with pytest.raises(TypeError, match="built in"):
        show(builtin)


def test_instances_point_to_their_class():
    with pytest.raises(TypeError, match=r"instance of Linear.*show\(type\(obj\)\)"):
        show(torch.nn.Linear(2, 2))
