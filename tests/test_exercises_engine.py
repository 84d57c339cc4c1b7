"""The exercise package as a whole: every checker the notebooks call is importable from
minigen.exercises, and the engine (minigen.exercises.engine) reports unfinished, crashing
and misused code instead of raising, for every checker."""

import inspect
import json
import re
from pathlib import Path

import pytest
import torch

from minigen import exercises
from minigen.exercises import (
    ch01_convolution,
    ch02_upsampling,
    ch03_autoencoder,
    ch04_vae,
    ch05_diffusion,
    ch06_clip,
    ch07_dalle2,
    ch08_latent,
    engine,
)
from minigen.exercises.engine import CheckResult, judge_size, run

CHAPTERS = [
    ch01_convolution,
    ch02_upsampling,
    ch03_autoencoder,
    ch04_vae,
    ch05_diffusion,
    ch06_clip,
    ch07_dalle2,
    ch08_latent,
]
CHECKERS = [
    getattr(exercises, name)
    for name in exercises.__all__
    if name.startswith("check_")
]
CASE_GENERATORS = [
    function
    for chapter in CHAPTERS
    for name, function in vars(chapter).items()
    if name.endswith("_cases") and inspect.isfunction(function)
]
NOTEBOOKS = sorted(Path(__file__).parents[1].glob("notebooks/*.ipynb"))


# --- the package re-exports every checker


def test_every_name_the_notebooks_use_is_exported():
    used = set()
    for notebook in NOTEBOOKS:
        for cell in json.loads(notebook.read_text())["cells"]:
            used |= set(re.findall(r"\bexercises\.(\w+)", "".join(cell["source"])))
    assert len(used) >= 11, used  # at least every checker of chapters 1-5
    assert used <= set(exercises.__all__)
    assert all(callable(getattr(exercises, name)) for name in used)


def test_every_checker_of_every_chapter_is_exported_once():
    defined = {
        name: chapter
        for chapter in CHAPTERS
        for name in vars(chapter)
        if name.startswith("check_")
        and getattr(chapter, name).__module__ == chapter.__name__
    }
    assert sorted(defined) == sorted(function.__name__ for function in CHECKERS)
    for name, chapter in defined.items():
        assert getattr(exercises, name) is getattr(chapter, name)
    assert exercises.CheckResult is engine.CheckResult


# --- every checker: unfinished and misused


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
def test_a_stub_is_not_attempted_yet(check):
    def stub(*args):
        raise NotImplementedError

    result = check(stub)
    assert isinstance(result, CheckResult)
    assert not result.passed and not result.attempted and result.cases == 1
    text = f"⏳ {result.name}: not attempted yet: your function raised NotImplementedError"
    assert " ".join(repr(result).split()) == text  # wrapped, words unchanged
    assert all(len(line) <= 84 for line in repr(result).splitlines())


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("not_a_function", [3, "my_function", torch.zeros(3), None])
def test_a_non_callable_is_a_type_error_that_names_the_checker(
    check, not_a_function
):
    name = check.__name__.removeprefix("check_")
    with pytest.raises(
        TypeError,
        match=rf"check_{name} must be your function itself, e\.g\. "
        rf"check_{name}\(my_{name}\) \(pass it without calling it\), got ",
    ):
        check(not_a_function)


@pytest.mark.parametrize("check", CHECKERS, ids=lambda check: check.__name__)
def test_a_crash_on_the_first_case_is_reported_not_raised(check):
    def crashes(*args):
        raise RuntimeError("boom")

    result = check(crashes)
    assert not result.passed and result.attempted and result.cases == 1
    assert isinstance(result.got, RuntimeError)
    assert result.message.endswith("but your function raised RuntimeError: boom")


# --- the engine itself, on a toy exercise: the square of an int


def square_cases():
    return [dict(x=x) for x in range(-3, 4)]


def check_square(fn):
    return run("square", fn, square_cases(), lambda x: x * x, judge_size)


def test_run_passes_a_right_answer_on_every_case():
    calls = []
    result = check_square(lambda x: calls.append(x) or x * x)
    assert result.passed and result.cases == 7 and calls == list(range(-3, 4))
    assert repr(result) == "✅ square: passed 7 cases"


def test_run_stops_at_the_first_wrong_value():
    result = check_square(
        lambda x: abs(x) * x
    )  # wrong for negative x only: -3 first
    assert not result.passed and result.cases == 1
    assert (result.counterexample, result.expected, result.got) == (
        dict(x=-3),
        9,
        -9,
    )
    assert repr(result) == "❌ square: x=-3 → expected 9, got -9"


def test_a_long_message_wraps_to_the_book_column_and_keeps_short_lines():
    message = "x=" + "1, " * 40 + "→ expected 9, got -9\n  short second line"
    result = CheckResult("square", passed=False, cases=1, message=message)
    lines = repr(result).splitlines()
    assert all(len(line) <= 84 for line in lines) and len(lines) == 3
    assert lines[1].startswith("    ") and lines[2] == "  short second line"
    assert " ".join(repr(result).split()) == " ".join(
        f"❌ square: {message}".split()
    )


def test_run_reports_a_type_problem_only_if_no_value_is_wrong():
    right_but_float = check_square(lambda x: float(x * x))
    assert not right_but_float.passed and right_but_float.cases == 1
    assert "the right value, but a size counts positions" in right_but_float.message
    later_wrong = check_square(lambda x: float(x * x) if x < 0 else x * x + 1)
    assert later_wrong.counterexample == dict(x=0) and later_wrong.got == 1


def test_run_points_out_a_missing_return():
    result = check_square(lambda x: None)
    assert (
        result.message
        == "x=-3 → expected 9, got None: does your function return it?"
    )


def test_a_judge_that_cannot_compare_counts_as_unequal():
    class Incomparable:
        def __eq__(self, other):
            raise ValueError("no")

    result = check_square(lambda x: Incomparable())
    assert not result.passed and result.message.startswith(
        "x=-3 → expected 9, got <"
    )


def test_wrap_is_applied_after_the_argument_check():
    wrapped = []

    def wrap(fn):
        wrapped.append(fn)
        return lambda x: fn(x) * 2

    with pytest.raises(TypeError):
        run("square", 3, square_cases(), lambda x: x * x, judge_size, wrap=wrap)
    assert wrapped == []
    result = run(
        "square",
        lambda x: x * x,
        square_cases(),
        lambda x: 2 * x * x,
        judge_size,
        wrap=wrap,
    )
    assert result.passed and len(wrapped) == 1


def test_judge_close_hints_at_a_missing_reduction_and_points_at_the_first_wrong_value():
    expected = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert engine.judge_close(expected, expected.clone()) is None
    assert (
        "reduce over every other axis"
        in engine.judge_close(expected, torch.ones(3, 2)).text
    )
    wrong = expected.clone()
    wrong[1] = 2.001
    assert (
        engine.judge_close(expected, wrong).text
        == "values differ: out[1] should be 2, got 2.001"
    )


# --- the cases: the same on every run, whatever else draws random numbers


@pytest.mark.parametrize("cases", CASE_GENERATORS, ids=lambda cases: cases.__name__)
def test_cases_do_not_depend_on_the_global_random_state(cases):
    torch.manual_seed(1)
    first = cases()
    torch.manual_seed(2)
    torch.randn(7)
    second = cases()
    assert len(first) == len(second) >= 30
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                assert torch.equal(a[key], b[key])
            else:
                assert a[key] == b[key]


def test_seeded_draws_from_its_own_generator_in_float64():
    randn = engine.seeded(torch.randn, 5)
    expected = torch.randn(
        10, generator=torch.Generator().manual_seed(5), dtype=torch.float64
    )
    assert torch.equal(torch.cat([randn(4), randn(6)]), expected)


# --- the engine's own arguments (the exercise, not the reader's answer): clear errors ---
# A wrong reference, judge or case table is a bug of the exercise: it must fail loudly with
# a TypeError or ValueError, never be judged as the reader's mistake or pass silently.


@pytest.mark.parametrize(
    "judge, expected, error, message",
    [
        (engine.judge_size, "3", TypeError, "expected must be an int, got str"),
        (engine.judge_size, 3.0, TypeError, "expected must be an int, got float"),
        (engine.judge_size, True, TypeError, "expected must be an int, got bool"),
        (engine.judge_size, -1, ValueError, "expected must be an int >= 0, got -1"),
        (engine.judge_tensor, None, TypeError, "expected must be a torch.Tensor"),
        (engine.judge_close, [[1.0]], TypeError, "expected must be a torch.Tensor"),
        (engine.judge_weights, "W", TypeError, "expected must be a torch.Tensor"),
        (
            engine.judge_weights,
            torch.ones(3),
            ValueError,
            r"expected must be a 2-d tensor \(out_size, in_size\)",
        ),
        (
            engine.judge_sample_and_gradients,
            "x",
            TypeError,
            r"expected must be a tuple of tensors \(z, d\(sum z\)/d mu",
        ),
        (
            engine.judge_sample_and_gradients,
            (torch.ones(2),) * 2,
            ValueError,
            "expected must be a tuple of 3 tensors",
        ),
        (
            engine.judge_sample_and_gradients,
            (torch.ones(2), None, torch.ones(2)),
            TypeError,
            "expected's d\\(sum z\\)/d mu must be a torch.Tensor",
        ),
    ],
)
def test_judges_check_the_expected_value(judge, expected, error, message):
    with pytest.raises(error, match=message):
        judge(expected, expected)


def test_judges_still_judge_right_and_wrong_answers():
    assert (
        engine.judge_size(0, 0) is None
        and engine.judge_size(4, 5).text == "expected 4, got 5"
    )
    weights = torch.eye(3, dtype=torch.float64)
    assert engine.judge_weights(weights, weights.clone()) is None
    assert "W[0, 0]" in engine.judge_weights(weights, 2 * weights).text
    triple = (torch.ones(2), torch.ones(2), torch.ones(2))
    assert engine.judge_sample_and_gradients(triple, triple) is None


def test_seeded_and_with_gradients_check_what_they_wrap():
    with pytest.raises(
        TypeError, match="draw must be a sampler such as torch.randn, got int"
    ):
        engine.seeded(42, 0)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        engine.seeded(torch.randn, -1)
    with pytest.raises(TypeError, match="seed must be an int, got float"):
        engine.seeded(torch.randn, 0.5)
    with pytest.raises(
        TypeError, match=r"fn must be a function \(mu, logvar, eps\) -> z, got str"
    ):
        engine.with_gradients("fn")


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"name": 3}, TypeError, "name must be str, got int"),
        ({"cases": "x"}, TypeError, "cases must be a list of cases"),
        (
            {"cases": [3]},
            TypeError,
            "every case must be a dict of arguments by name, got int",
        ),
        ({"reference": None}, TypeError, "reference must be a function, got None"),
        (
            {"judge": "size"},
            TypeError,
            r"judge must be a judge \(expected, got\), got str",
        ),
        ({"wrap": 42}, TypeError, "wrap must be a function wrapper, got int"),
    ],
)
def test_run_checks_the_exercise_it_is_given(change, error, message):
    arguments = dict(
        name="square", fn=lambda x: x * x, cases=square_cases(),
        reference=lambda x: x * x, judge=judge_size,
    )  # fmt: skip
    assert run(**arguments).passed
    with pytest.raises(error, match=message):
        run(**{**arguments, **change})
