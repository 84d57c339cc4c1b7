import math
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen.core import train as train_module
from minigen.core.runtime import Precision
from minigen.core.train import (
    EMA,
    History,
    NonFiniteGradientError,
    NonFiniteLossError,
    check_training_arguments,
    load_checkpoint,
    progress_mode,
    save_checkpoint,
    train,
    warmup_cosine,
)

CPU = torch.device("cpu")
FP32 = Precision(CPU, torch.float32)
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"
)


def regression_data(
    n: int = 256, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = (
        x @ torch.tensor([[1.5], [-2.0], [0.5]])
        + 0.3
        + 0.1 * torch.randn(n, 1, generator=g)
    )
    return x, y


def mse_closure(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda step: F.mse_loss(model(x), y)


def test_linear_regression_reaches_the_least_squares_solution():
    x, y = regression_data()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train(
        model,
        mse_closure(model, x, y),
        steps=100,
        optimizer=optimizer,
        precision=FP32,
        progress=False,
    )
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    # argmin ||design @ w - y||
    least_squares = torch.linalg.lstsq(design, y).solution.squeeze(1)
    fitted = torch.cat([model.weight.detach().squeeze(0), model.bias.detach()])
    torch.testing.assert_close(fitted, least_squares, atol=1e-4, rtol=0)
    assert history.losses[-1] < 0.01 * history.losses[0]
    assert history.steps == list(range(100)) and history.completed_steps == 100
    assert history.seconds > 0


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_loss_raises_before_the_optimizer_step(bad):
    x, y = regression_data()
    model = nn.Linear(3, 1).eval()
    weights_seen = {}

    def loss_fn(step):
        weights_seen[step] = model.weight.detach().clone()
        loss = F.mse_loss(model(x), y)
        return loss * bad if step == 3 else loss

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match=r"step 3.*learning rate") as info:
        train(
            model,
            loss_fn,
            steps=10,
            optimizer=optimizer,
            precision=FP32,
            progress=False,
        )
    assert isinstance(info.value, RuntimeError)
    assert info.value.step == 3 and not math.isfinite(info.value.loss)
    # the bad step changed nothing
    assert torch.equal(model.weight, weights_seen[3])
    assert not model.training  # the mode it was found in


def test_ema_equals_the_hand_computed_exponential_average():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    decay = 0.9
    ema = EMA(model, decay=decay)
    assert ema.ema_model is ema.module and ema.module is not model
    assert (
        not any(p.requires_grad for p in ema.module.parameters())
        and not ema.module.training
    )
    expected = [p.detach().clone() for p in model.parameters()]
    for k in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.full_like(p, float(k)) + torch.randn_like(p))
            model[1].running_mean.fill_(10.0 * k)
        ema.update(model)
        expected = [
            decay * e + (1 - decay) * p.detach()
            for e, p in zip(expected, model.parameters())
        ]
    for averaged, hand in zip(ema.module.parameters(), expected):
        torch.testing.assert_close(averaged, hand)
    # buffers are copied
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 40.0))


def test_ema_of_a_constant_model_approaches_it_geometrically():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(3):
        ema.update(model)
    # theta_n = theta + decay^n (theta_0 - theta)
    assert ema.module.weight.item() == pytest.approx(1 - 0.5**3)


def test_ema_state_dict_round_trip_and_validation():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    ema.update(nn.Linear(2, 2))
    restored = EMA(nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.99
    assert all(
        torch.equal(a, b)
        for a, b in zip(restored.module.parameters(), ema.module.parameters())
    )
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EMA(model, decay=1.0)
    with pytest.raises(ValueError, match="differ"):
        ema.update(nn.Linear(2, 2, bias=False))


def test_train_updates_the_ema_after_every_step():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    ema = EMA(model, decay=0.8)
    weights = [model.weight.detach().clone()]  # weights[k]: after k optimizer steps

    def loss_fn(step):
        if step > 0:
            weights.append(model.weight.detach().clone())
        return F.mse_loss(model(x), y)

    train(
        model,
        loss_fn,
        steps=5,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=FP32,
        ema=ema,
        progress=False,
    )
    weights.append(model.weight.detach().clone())
    expected = weights[0]
    for theta in weights[1:]:
        expected = 0.8 * expected + 0.2 * theta
    torch.testing.assert_close(ema.module.weight, expected)


class Regressor(nn.Module):
    """A small MLP with dropout, so resuming must restore the random state too."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1)
        )

    def forward(self, x):
        return self.net(x)


def fresh_run(init_seed: int):
    torch.manual_seed(init_seed)
    model = Regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, decay=0.9)

    def loss_fn(step):
        # torch's global generator: a resumed run must draw the same batches
        x = torch.randn(32, 4)
        return F.mse_loss(model(x), x.sum(1, keepdim=True).sin())

    return model, optimizer, ema, loss_fn


def test_resume_from_checkpoint_is_bit_for_bit(tmp_path):
    model, optimizer, ema, loss_fn = fresh_run(0)
    torch.manual_seed(1)
    straight = train(
        model,
        loss_fn,
        steps=10,
        optimizer=optimizer,
        precision=FP32,
        ema=ema,
        progress=False,
    )

    path = tmp_path / "run.pt"
    first, opt1, ema1, loss1 = fresh_run(0)
    torch.manual_seed(1)
    train(
        first,
        loss1,
        steps=5,
        optimizer=opt1,
        precision=FP32,
        ema=ema1,
        checkpoint=path,
        checkpoint_every=3,
        progress=False,
    )
    # other initial weights, overwritten by the checkpoint
    second, opt2, ema2, loss2 = fresh_run(99)
    torch.manual_seed(12345)  # another random state, restored from the checkpoint
    resumed = train(
        second,
        loss2,
        steps=10,
        optimizer=opt2,
        precision=FP32,
        ema=ema2,
        checkpoint=path,
        progress=False,
    )

    for a, b in zip(model.parameters(), second.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(ema.module.parameters(), ema2.module.parameters()):
        assert torch.equal(a, b)
    assert (
        resumed.losses == straight.losses
        and resumed.steps == straight.steps == list(range(10))
    )
    assert load_checkpoint(path, Regressor())["step"] == 10
    assert not list(tmp_path.glob("*.partial"))


def test_a_crash_leaves_the_last_periodic_checkpoint(tmp_path):
    model, optimizer, _, loss_fn = fresh_run(0)

    def crashing(step):
        return loss_fn(step) * (math.nan if step == 5 else 1.0)

    path = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError):
        train(
            model,
            crashing,
            steps=10,
            optimizer=optimizer,
            precision=FP32,
            checkpoint=path,
            checkpoint_every=2,
            progress=False,
        )
    saved = load_checkpoint(path, Regressor())
    assert (
        saved["step"] == 4
        and saved["history"].completed_steps == 4
        and saved["history"].steps == [0, 1, 2, 3]
    )


def test_finished_checkpoint_is_not_retrained_and_cannot_go_back(tmp_path):
    model, optimizer, _, loss_fn = fresh_run(0)
    path = tmp_path / "run.pt"
    train(
        model,
        loss_fn,
        steps=4,
        optimizer=optimizer,
        precision=FP32,
        checkpoint=path,
        progress=False,
    )

    def must_not_run(step):
        raise AssertionError(f"step {step} was trained again")

    history = train(
        model,
        must_not_run,
        steps=4,
        optimizer=optimizer,
        precision=FP32,
        checkpoint=path,
        progress=False,
    )
    assert history.completed_steps == 4
    with pytest.raises(ValueError, match="already at step 4"):
        train(
            model,
            must_not_run,
            steps=3,
            optimizer=optimizer,
            precision=FP32,
            checkpoint=path,
            progress=False,
        )
    with pytest.raises(ValueError, match="history=None"):
        train(
            model,
            must_not_run,
            steps=8,
            optimizer=optimizer,
            precision=FP32,
            checkpoint=path,
            history=History(),
            progress=False,
        )


def test_history_continues_where_it_stopped():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(step):
        calls.append(step)
        return F.mse_loss(model(x), y)

    history = train(
        model, loss_fn, steps=3, optimizer=optimizer, precision=FP32, progress=False
    )
    again = train(
        model,
        loss_fn,
        steps=5,
        optimizer=optimizer,
        precision=FP32,
        history=history,
        progress=False,
    )
    assert (
        again is history
        and calls == [0, 1, 2, 3, 4]
        and history.steps == [0, 1, 2, 3, 4]
    )


def test_metrics_and_log_every():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    maes = {}

    def loss_fn(step):
        prediction = model(x)
        maes[step] = (prediction - y).abs().mean().item()
        return F.mse_loss(prediction, y), {"mae": maes[step]}

    history = train(
        model,
        loss_fn,
        steps=10,
        optimizer=optimizer,
        precision=FP32,
        log_every=3,
        progress=False,
    )
    assert history.steps == [0, 3, 6, 9]
    assert history.metrics == {"mae": [maes[s] for s in (0, 3, 6, 9)]}

    def changing(step):
        return F.mse_loss(model(x), y), (
            {"mae": 0.0} if step == 0 else {"rmse": 0.0}
        )

    with pytest.raises(ValueError, match="same names"):
        train(
            model,
            changing,
            steps=2,
            optimizer=optimizer,
            precision=FP32,
            progress=False,
        )


def test_model_trains_in_train_mode_and_is_left_as_found():
    x, y = regression_data()
    model = nn.Linear(3, 1).eval()
    modes = []

    def loss_fn(step):
        modes.append(model.training)
        return F.mse_loss(model(x), y)

    train(
        model,
        loss_fn,
        steps=2,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=FP32,
        progress=False,
    )
    assert modes == [True, True] and not model.training


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grad_clip_bounds_the_update_of_the_true_gradient(dtype):
    """One SGD step with lr 1 moves the weights by exactly the clipped norm; under fp16 that holds only
    if the scaled gradients are unscaled before clipping."""
    x, y = regression_data()
    y = 0.01 * y  # small errors, so gradients scaled by 2**16 still fit in fp16
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    precision = Precision(CPU, dtype)
    assert precision.grad_scaler().is_enabled() == (dtype is torch.float16)
    train(
        model,
        mse_closure(model, x, y),
        steps=1,
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        precision=precision,
        grad_clip=1e-3,
        progress=False,
    )
    moved = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_bf16_autocast_path_on_cpu():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    output_dtypes = []

    def loss_fn(step):
        prediction = model(x)
        output_dtypes.append(prediction.dtype)
        return F.mse_loss(prediction.float(), y)

    history = train(
        model,
        loss_fn,
        steps=20,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=Precision(CPU, torch.bfloat16),
        progress=False,
    )
    assert set(output_dtypes) == {torch.bfloat16}
    assert model.weight.dtype is torch.float32  # weights stay fp32
    assert (
        all(math.isfinite(v) for v in history.losses)
        and history.losses[-1] < history.losses[0]
    )


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_on_cuda(dtype):
    if dtype is torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no native bf16")
    x, y = (t.cuda() for t in regression_data())
    model = nn.Linear(3, 1).cuda()
    history = train(
        model,
        mse_closure(model, x, y),
        steps=200,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=Precision(torch.device("cuda"), dtype),
        grad_clip=10.0,
        progress=False,
    )
    assert history.losses[-1] < 0.05 * history.losses[0]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"steps": 0}, ValueError, "steps must be an int >= 1, got 0"),
        ({"steps": -3}, ValueError, "steps must be an int >= 1, got -3"),
        ({"steps": 10**9}, ValueError, "steps must be an int <= 1,000,000"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"steps": True}, TypeError, "steps must be an int"),
        ({"steps": 2, "log_every": 0}, ValueError, "log_every"),
        ({"steps": 2, "checkpoint_every": 1}, ValueError, "checkpoint=PATH"),
        ({"steps": 2, "grad_clip": 0.0}, ValueError, "grad_clip"),
        (
            {"steps": 2, "grad_clip": math.nan},
            ValueError,
            "grad_clip must be a finite number",
        ),
        (
            {"steps": 2, "progress": "no"},
            TypeError,
            "progress must be True or False",
        ),
        (
            {"steps": 2, "optimizer": "adam"},
            TypeError,
            "optimizer must be a torch optimizer",
        ),
        (
            {"steps": 2, "precision": "fp32"},
            TypeError,
            "precision must be Precision",
        ),
        (
            {"steps": 2, "generators": torch.Generator()},
            TypeError,
            "generators must be a list or tuple",
        ),
        (
            {"steps": 2, "generators": [1]},
            TypeError,
            "every entry of generators must be Generator",
        ),
        (
            {"steps": 2, "checkpoint": ""},
            ValueError,
            "checkpoint must be a file path",
        ),
        ({"steps": 2, "history": []}, TypeError, "history must be History"),
        (
            {
                "steps": 2,
                "precision": Precision(torch.device("cuda"), torch.float32),
            },
            ValueError,
            "model is on cpu",
        ),
    ],
)
def test_bad_arguments_fail_early(kwargs, error, message):
    model = nn.Linear(3, 1)
    x, y = regression_data()
    kwargs = {
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "progress": False,
        **kwargs,
    }
    with pytest.raises(error, match=message):
        train(model, mse_closure(model, x, y), **kwargs)


@pytest.mark.parametrize(
    "returned, error, message",
    [
        (lambda out: out.sum().detach(), ValueError, "does not require grad"),
        (lambda out: out.sum(1), ValueError, "scalar"),
        (lambda out: out.sum().item(), TypeError, "scalar tensor"),
        (lambda out: (out.sum(), [1.0]), TypeError, "dict of metrics"),
    ],
)
def test_bad_loss_values_fail_early(returned, error, message):
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with pytest.raises(error, match=message):
        train(
            model,
            lambda step: returned(model(x)),
            steps=1,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            precision=FP32,
            progress=False,
        )


def test_checkpoint_round_trip_and_missing_parts(tmp_path):
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    history = History(
        steps=[0, 1],
        losses=[2.0, 1.0],
        metrics={"acc": [0.1, 0.2]},
        seconds=3.0,
        completed_steps=2,
    )
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(
        path,
        model,
        step=2,
        history=history,
        extra={"note": "hello", "tensor": torch.ones(2)},
    )
    other = nn.Linear(3, 1)
    loaded = load_checkpoint(path, other)
    assert torch.equal(other.weight, model.weight) and torch.equal(
        other.bias, model.bias
    )
    assert loaded["step"] == 2 and loaded["history"] == history
    assert loaded["extra"]["note"] == "hello" and torch.equal(
        loaded["extra"]["tensor"], torch.ones(2)
    )
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, other, optimizer=optimizer)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), max_size=40), st.integers(1, 12))
def test_smoothed_is_the_trailing_mean(losses, window):
    smoothed = History(steps=list(range(len(losses))), losses=losses).smoothed(
        window
    )
    brute = [
        sum(losses[max(0, i - window + 1) : i + 1])
        / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    assert smoothed == pytest.approx(brute, abs=1e-9)


def test_smoothed_rejects_bad_windows():
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        History().smoothed(0)
    with pytest.raises(TypeError, match="window must be an int"):
        History().smoothed(2.0)


def test_progress_bar_shows_desc_and_smoothed_loss(capsys):
    x, y = regression_data()
    model = nn.Linear(3, 1)
    train(
        model,
        mse_closure(model, x, y),
        steps=3,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=FP32,
        desc="fit",
    )
    bar = capsys.readouterr().err
    assert "fit" in bar and "3/3" in bar and "loss=" in bar


def fit_three_steps(progress=True):
    x, y = regression_data()
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    closure = mse_closure(model, x, y)
    return train(
        model, closure, steps=3, optimizer=optimizer, precision=FP32, desc="fit",
        log_every=1, progress=progress,
    )  # fmt: skip


def test_text_progress_prints_only_the_final_line(capsys, monkeypatch):
    monkeypatch.setenv("MINIGEN_PROGRESS", " Text ")
    history = fit_three_steps()
    out, err = capsys.readouterr()
    assert err == ""
    meter, metrics = out.splitlines()  # no frames: the meter, then the loss
    assert "\r" not in out and meter.startswith("fit: 100%") and "3/3" in meter
    recent = sum(history.losses) / len(history.losses)
    assert metrics == f"  loss={recent:.4g}"


def test_text_progress_fits_the_book_column(capsys, monkeypatch):
    monkeypatch.setenv("MINIGEN_PROGRESS", "text")
    x, y = regression_data()
    model = nn.Linear(3, 1)
    names = [f"metric_with_a_long_name_{i}" for i in range(6)]

    def loss_fn(step):
        loss = ((model(x) - y) ** 2).mean()
        return loss, {name: loss.detach() for name in names}

    train(
        model, loss_fn, steps=3, optimizer=torch.optim.SGD(model.parameters(), 0.1),
        precision=FP32, desc="a long description of what trains", log_every=1,
    )  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 3 and all(len(line) <= 84 for line in lines)
    assert lines[0].startswith("a long description of what trains: 100%")
    assert all(f"{name}=" in "".join(lines[1:]) for name in names)


def test_text_progress_stays_silent_when_progress_is_off(capsys, monkeypatch):
    monkeypatch.setenv("MINIGEN_PROGRESS", "text")
    fit_three_steps(progress=False)
    assert capsys.readouterr() == ("", "")


def test_an_unknown_progress_mode_is_named(monkeypatch):
    monkeypatch.setenv("MINIGEN_PROGRESS", "widget")
    with pytest.raises(ValueError, match="MINIGEN_PROGRESS='widget' is not a prog"):
        fit_three_steps()
    with pytest.raises(ValueError, match="MINIGEN_PROGRESS='widget' is not a prog"):
        fit_three_steps(progress=False)  # not ignored when no bar is shown
    monkeypatch.delenv("MINIGEN_PROGRESS")
    assert progress_mode() == "live"


def test_scheduler_steps_once_per_step_and_resumes_from_the_checkpoint(tmp_path):
    def run(steps, path):
        model = nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5**step
        )
        x, y = regression_data()
        train(
            model,
            mse_closure(model, x, y),
            steps=steps,
            optimizer=optimizer,
            scheduler=scheduler,
            precision=FP32,
            checkpoint=path,
            progress=False,
        )
        return optimizer.param_groups[0]["lr"]

    assert run(4, tmp_path / "a.pt") == 0.5**4  # lr after 4 steps of the schedule
    run(2, tmp_path / "b.pt")
    # resumed at step 2, not restarted at 0
    assert run(4, tmp_path / "b.pt") == 0.5**4


# --- non-finite gradients: caught before the optimizer step (fp16: the GradScaler skips) ---


class ScaleGradient(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by `factor` (inf or NaN here),
    so the loss stays finite while the gradient does not."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


def poisoned_run(precision, bad_step, factor, checkpoint=None, steps=4):
    """Train a linear model whose gradient at `bad_step` is multiplied by `factor`; returns
    the model and its weights as each step began."""
    x, y = regression_data()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    weights = {}

    def loss_fn(step):
        weights[step] = model.weight.detach().clone()
        out = model(x)
        if step == bad_step:
            out = ScaleGradient.apply(out, factor)
        return F.mse_loss(out.float(), y)

    train(
        model,
        loss_fn,
        steps=steps,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=precision,
        checkpoint=checkpoint,
        checkpoint_every=1 if checkpoint else None,
        progress=False,
    )
    return model, weights


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("factor", [math.inf, math.nan])
def test_a_nonfinite_gradient_with_a_finite_loss_stops_before_the_step(
    dtype, factor, tmp_path
):
    path = tmp_path / "run.pt"
    with pytest.raises(
        NonFiniteGradientError,
        match=r"gradient is NaN or infinite at step 2.*weight",
    ) as info:
        poisoned_run(
            Precision(CPU, dtype), bad_step=2, factor=factor, checkpoint=path
        )
    assert isinstance(info.value, NonFiniteLossError)  # one except catches both
    assert info.value.step == 2 and math.isfinite(info.value.loss)
    assert set(info.value.parameters) == {"weight", "bias"}
    saved = nn.Linear(3, 1)
    # no checkpoint of the bad step
    assert load_checkpoint(path, saved)["step"] == 2
    assert all(torch.isfinite(p).all() for p in saved.parameters())


def test_the_model_is_unchanged_by_the_refused_step():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    before = [p.detach().clone() for p in model.parameters()]

    def loss_fn(step):
        return F.mse_loss(ScaleGradient.apply(model(x), math.nan), y)

    with pytest.raises(NonFiniteGradientError, match="step 0"):
        train(
            model,
            loss_fn,
            steps=3,
            optimizer=torch.optim.Adam(model.parameters()),
            precision=FP32,
            progress=False,
        )
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_fp16_overflowed_steps_are_skipped_by_the_grad_scaler_not_raised(grad_clip):
    x, y = regression_data()
    y = 0.01 * y  # small errors: gradients scaled by 2**16 fit in fp16
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    weights = {}

    def loss_fn(step):
        weights[step] = model.weight.detach().clone()
        out = model(x)
        return F.mse_loss(
            (ScaleGradient.apply(out, math.inf) if step == 1 else out).float(), y
        )

    history = train(
        model,
        loss_fn,
        steps=3,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=Precision(CPU, torch.float16),
        grad_clip=grad_clip,
        progress=False,
    )
    assert history.completed_steps == 3
    assert not torch.equal(weights[1], weights[0])  # step 0 was taken
    assert torch.equal(weights[2], weights[1])  # step 1 overflowed: skipped
    assert not torch.equal(model.weight, weights[2])  # step 2 was taken again
    assert torch.isfinite(model.weight).all()


def test_gradient_clipping_still_scales_the_gradient_by_the_true_norm():
    """clip_grads_with_norm_ with the norm the loop checked equals torch's clip_grad_norm_."""
    x, y = regression_data()
    torch.manual_seed(0)
    ours, reference = nn.Linear(3, 1), nn.Linear(3, 1)
    reference.load_state_dict(ours.state_dict())
    train(
        ours,
        mse_closure(ours, x, y),
        steps=3,
        optimizer=torch.optim.SGD(ours.parameters(), lr=0.1),
        precision=FP32,
        grad_clip=0.05,
        progress=False,
    )
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        F.mse_loss(reference(x), y).backward()
        nn.utils.clip_grad_norm_(reference.parameters(), 0.05)
        optimizer.step()
    for a, b in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(a, b)


# --- checkpoint files that are not checkpoints ---


def _broken_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, nn.Linear(3, 1), step=1)
    data = good.read_bytes()
    files = {
        "empty": b"",
        "random bytes": bytes(range(256)) * 8,
        "truncated half": data[: len(data) // 2],
        "truncated end": data[:-10],
        "text": b"hello\n",
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.pt"
        paths[name].write_bytes(content)
    weights = tmp_path / "weights_only.pt"
    # a torch file, but not a checkpoint
    torch.save(nn.Linear(3, 1).state_dict(), weights)
    paths["a state_dict"] = weights
    return paths


def test_files_that_are_not_checkpoints_are_named_in_a_value_error(tmp_path):
    for kind, path in _broken_files(tmp_path).items():
        with pytest.raises(
            ValueError, match=rf"^{path} is not a valid checkpoint"
        ) as info:
            load_checkpoint(path, nn.Linear(3, 1))
        # no advice to unpickle anything
        assert "weights_only=False" not in str(info.value), kind


def test_train_refuses_a_corrupt_checkpoint_instead_of_overwriting_it(tmp_path):
    path = _broken_files(tmp_path)["truncated end"]
    content = path.read_bytes()
    model = nn.Linear(3, 1)
    x, y = regression_data()
    with pytest.raises(
        ValueError, match=rf"{path} is not a valid checkpoint.*delete or move it"
    ):
        train(
            model,
            mse_closure(model, x, y),
            steps=2,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            precision=FP32,
            checkpoint=path,
            progress=False,
        )
    assert path.read_bytes() == content


def test_missing_files_folders_and_mismatched_models_are_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="no checkpoint file here: .*absent.pt"
    ) as missing:
        load_checkpoint(tmp_path / "absent.pt", nn.Linear(3, 1))
    # the path is the OSError's filename, as open() would give it
    assert missing.value.filename == str(tmp_path / "absent.pt")
    with pytest.raises(IsADirectoryError, match="is a folder") as folder:
        load_checkpoint(tmp_path, nn.Linear(3, 1))
    assert folder.value.filename == str(tmp_path)
    path = tmp_path / "linear.pt"
    save_checkpoint(path, nn.Linear(3, 1))
    with pytest.raises(
        ValueError,
        match=r"(?s)the model state in .*linear.pt does not fit.*size mismatch",
    ):
        load_checkpoint(path, nn.Linear(4, 1))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        load_checkpoint(path, "model")


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    model = nn.Linear(3, 1)
    save_checkpoint(path, model, step=1)

    def crash(state, file):
        Path(file).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, step=2)
    monkeypatch.undo()
    assert load_checkpoint(path, nn.Linear(3, 1))["step"] == 1


# --- private generators are checkpointed ---


def private_generator_run(path, steps):
    """A loss that draws its batches from a private generator (not torch's global one)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    batches = torch.Generator().manual_seed(1)

    def loss_fn(step):
        x = torch.randn(16, 4, generator=batches)
        return F.mse_loss(model(x), x.sum(1, keepdim=True))

    history = train(
        model,
        loss_fn,
        steps=steps,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        precision=FP32,
        checkpoint=path,
        progress=False,
        generators=[batches],
    )
    return model, history


def test_resume_restores_private_generators(tmp_path):
    straight, straight_history = private_generator_run(tmp_path / "a.pt", 6)
    private_generator_run(tmp_path / "b.pt", 3)
    resumed, resumed_history = private_generator_run(tmp_path / "b.pt", 6)
    assert torch.equal(resumed.weight, straight.weight)
    assert resumed_history.losses == straight_history.losses


def test_resume_with_other_generators_is_refused(tmp_path):
    private_generator_run(tmp_path / "run.pt", 2)
    model = nn.Linear(4, 1)
    with pytest.raises(
        ValueError, match="state of 1 private generators, but training passed 0"
    ):
        train(
            model,
            lambda step: model(torch.ones(1, 4)).sum(),
            steps=3,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            precision=FP32,
            checkpoint=tmp_path / "run.pt",
            progress=False,
        )


# --- the checks every train_* helper runs first ---


GOOD = dict(
    steps=10,
    lr=1e-3,
    seed=0,
    precision=None,
    progress=False,
    checkpoint=None,
    checkpoint_every=None,
    batch_size=8,
)


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": -4}, ValueError, "batch_size must be an int >= 1, got -4"),
        (
            {"batch_size": 10**9},
            ValueError,
            "batch_size must be an int <= 1,000,000",
        ),
        ({"batch_size": 8.0}, TypeError, "batch_size must be an int"),
        # a trainer that takes a batch size gets one: None is not "no batches"
        ({"batch_size": None}, TypeError, "batch_size must be an int, got None"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1"),
        ({"steps": 10**9}, ValueError, "steps must be an int <= 1,000,000"),
        ({"lr": 0.0}, ValueError, "lr must lie in"),
        ({"lr": math.nan}, ValueError, "lr must be a finite number"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"seed": 2**32}, ValueError, "seed must be an int <= 4,294,967,295"),
        ({"progress": "yes"}, TypeError, "progress must be True or False"),
        ({"precision": "bf16"}, TypeError, "precision must be Precision"),
        ({"checkpoint_every": 5}, ValueError, "checkpoint=PATH"),
    ],
)
def test_check_training_arguments(change, error, message):
    check_training_arguments(**GOOD)
    # a trainer without batches leaves batch_size out
    check_training_arguments(**{k: v for k, v in GOOD.items() if k != "batch_size"})
    with pytest.raises(error, match=message):
        check_training_arguments(**{**GOOD, **change})


def test_train_restores_the_modes_of_submodules():
    x, y = regression_data()
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 1))
    model[1].eval()  # e.g. a frozen part kept in eval mode on purpose
    modes = []

    def loss_fn(step):
        modes.append((model[0].training, model[1].training))
        return F.mse_loss(model(x), y)

    train(
        model,
        loss_fn,
        steps=1,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=FP32,
        progress=False,
    )
    assert modes == [(True, True)]
    assert model.training and model[0].training and not model[1].training


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nonfinite_gradients_on_cuda_fp16_skipped_bf16_raised(dtype):
    if dtype is torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no native bf16")
    x, y = (t.cuda() for t in regression_data())
    y = 0.01 * y
    model = nn.Linear(3, 1).cuda()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    weights = {}

    def loss_fn(step):
        weights[step] = model.weight.detach().clone()
        out = model(x)
        return F.mse_loss(
            (ScaleGradient.apply(out, math.inf) if step == 1 else out).float(), y
        )

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = Precision(torch.device("cuda"), dtype)
    if dtype is torch.float16:
        train(
            model,
            loss_fn,
            steps=3,
            optimizer=optimizer,
            precision=precision,
            progress=False,
        )
        assert not torch.equal(weights[1], weights[0])  # step 0 taken
        assert torch.equal(weights[2], weights[1])  # step 1 overflowed: skipped
    else:
        with pytest.raises(NonFiniteGradientError, match="step 1"):
            train(
                model,
                loss_fn,
                steps=3,
                optimizer=optimizer,
                precision=precision,
                progress=False,
            )
        assert torch.equal(model.weight, weights[1])


def cuda_dropout_run(path, steps):
    """Dropout and batches from the CUDA generator: a resume must restore its state."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 16), nn.Dropout(0.3), nn.Linear(16, 1)
    ).cuda()

    def loss_fn(step):
        x = torch.randn(32, 4, device="cuda")
        return F.mse_loss(model(x), x.sum(1, keepdim=True))

    history = train(
        model,
        loss_fn,
        steps=steps,
        optimizer=torch.optim.Adam(model.parameters()),
        precision=Precision(torch.device("cuda"), torch.float32),
        checkpoint=path,
        progress=False,
    )
    return model, history


@needs_cuda
def test_resume_on_cuda_restores_the_cuda_random_state(tmp_path):
    straight, straight_history = cuda_dropout_run(tmp_path / "straight.pt", 6)
    cuda_dropout_run(tmp_path / "resumed.pt", 3)
    resumed, resumed_history = cuda_dropout_run(tmp_path / "resumed.pt", 6)
    assert resumed_history.losses == straight_history.losses
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.parameters(), straight.parameters())
    )


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---


@pytest.mark.parametrize(
    "step, loss, metrics, error, message",
    [
        (0, math.nan, {}, ValueError, "loss must be a finite number, got nan"),
        (0, math.inf, {}, ValueError, "loss must be a finite number"),
        (0, "0.5", {}, TypeError, "loss must be a number, got str"),
        (0, True, {}, TypeError, "loss must be a number, got bool"),
        (-1, 0.5, {}, ValueError, "step must be an int >= 0, got -1"),
        (1.5, 0.5, {}, TypeError, "step must be an int, got float"),
        (True, 0.5, {}, TypeError, "step must be an int, got bool"),
        (0, 0.5, None, TypeError, "metrics must be a dict"),
    ],
)
def test_history_record_rejects_what_train_never_logs(
    step, loss, metrics, error, message
):
    history = History()
    with pytest.raises(error, match=message):
        history.record(step, loss, metrics)
    assert history.steps == [] and history.losses == []  # nothing half-recorded
    history.record(3, 0.25, {"kl": torch.tensor(2.0)})
    assert history.steps == [3] and history.losses == [0.25]
    assert history.metrics == {"kl": [2.0]}


def test_ema_update_and_load_state_dict_check_their_arguments():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    with pytest.raises(TypeError, match="model must be an nn.Module, got int"):
        ema.update(42)
    with pytest.raises(TypeError, match="state must be a dict from EMA.state_dict"):
        ema.load_state_dict(None)
    with pytest.raises(
        ValueError,
        match="entries decay, module, updates, warmup, got the entries \\[\\]",
    ):
        ema.load_state_dict({})
    state = ema.state_dict()
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\), got 1.5"):
        ema.load_state_dict({**state, "decay": 1.5})
    other = EMA(nn.Linear(3, 2), decay=0.5).state_dict()
    with pytest.raises(
        ValueError, match="(?s)do not fit this EMA's model.*size mismatch"
    ):
        ema.load_state_dict({**other, "decay": 0.5})
    assert ema.decay == 0.9  # a refused state does not change the decay


@pytest.mark.parametrize(
    "part, value, message",
    [
        ("optimizer", "adam", "optimizer must be a torch optimizer, got str"),
        ("ema", nn.Linear(2, 2), "ema must be EMA, got Linear"),
        ("scaler", [1], "scaler must be GradScaler, got list"),
        ("scheduler", 0.1, "scheduler must be LRScheduler, got float"),
        ("history", [1.0], "history must be History, got list"),
        ("extra", "note", "extra must be dict, got str"),
    ],
)
def test_save_checkpoint_rejects_parts_of_the_wrong_kind_before_writing(
    tmp_path, part, value, message
):
    path = tmp_path / "run.pt"
    with pytest.raises(TypeError, match=message):
        save_checkpoint(path, nn.Linear(2, 2), **{part: value})
    assert not path.exists() and not list(tmp_path.iterdir())


def test_load_checkpoint_checks_the_parts_and_the_device(tmp_path):
    path = tmp_path / "run.pt"
    model = nn.Linear(2, 2)
    save_checkpoint(path, model)
    with pytest.raises(
        TypeError, match="optimizer must be a torch optimizer, got str"
    ):
        load_checkpoint(path, model, optimizer="adam")
    with pytest.raises(TypeError, match="ema must be EMA"):
        load_checkpoint(path, model, ema=42)
    with pytest.raises(
        TypeError, match="device must be a device name or torch.device, got None"
    ):
        load_checkpoint(path, model, map_location=None)
    with pytest.raises(ValueError, match="device must name a torch device"):
        load_checkpoint(path, model, map_location="nowhere")
    other = nn.Linear(2, 2)
    load_checkpoint(path, other, map_location=torch.device("cpu"))
    assert torch.equal(other.weight, model.weight)


def test_on_step_sees_every_step_and_its_time_is_not_training_time(monkeypatch):
    x, y = regression_data()
    model = nn.Linear(3, 1)
    seen, weights = [], []
    clock = iter(range(0, 10_000, 1))  # each perf_counter call: one more second

    def on_step(done):
        seen.append(done)
        weights.append(model.weight.detach().clone())
        for _ in range(50):  # 50 s "spent" judging the model
            next(clock)

    fake_time = types.SimpleNamespace(perf_counter=lambda: float(next(clock)))
    monkeypatch.setattr(train_module, "time", fake_time)
    history = train(
        model,
        lambda step: F.mse_loss(model(x), y),
        steps=4,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        precision=FP32,
        progress=False,
        on_step=on_step,
    )
    assert seen == [1, 2, 3, 4]
    # called after the optimizer step: the weights already moved
    assert not torch.equal(weights[0], weights[1])
    assert torch.equal(weights[-1], model.weight)
    assert history.seconds < 50  # the judging time is left out


def test_on_step_must_be_callable():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    with pytest.raises(TypeError, match="on_step must be a function"):
        train(
            model,
            lambda step: F.mse_loss(model(x), y),
            steps=1,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            on_step=3,
        )


def test_ema_warmup_follows_its_decay_formula_and_survives_a_round_trip():
    model = nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.99, warmup=True)
    expected = model.weight.detach().clone()
    for n in range(30):
        with torch.no_grad():
            model.weight.fill_(float(n + 1))
        decay = min(0.99, (1 + n) / (10 + n))  # 0.1, 0.18, ... capped at 0.99
        assert ema.current_decay() == pytest.approx(decay)
        ema.update(model)
        expected = decay * expected + (1 - decay) * model.weight
    torch.testing.assert_close(ema.module.weight, expected)
    restored = EMA(nn.Linear(1, 1, bias=False), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert (restored.decay, restored.warmup, restored.updates) == (0.99, True, 30)
    assert restored.current_decay() == ema.current_decay()


def test_ema_without_warmup_keeps_its_decay_and_reads_old_states():
    model = nn.Linear(1, 1, bias=False)
    ema = EMA(model, decay=0.9)
    ema.update(model)
    assert ema.current_decay() == 0.9 and ema.updates == 1
    old = {
        "decay": 0.8,
        "module": ema.module.state_dict(),
    }  # before warm-up existed
    ema.load_state_dict(old)
    assert (ema.decay, ema.warmup, ema.updates) == (0.8, False, 0)
    with pytest.raises(TypeError, match="warmup must be True or False"):
        EMA(model, warmup="yes")


@pytest.mark.parametrize("warmup_steps", [0, 1, 7])
def test_warmup_cosine_is_linear_then_torchs_cosine(warmup_steps):
    steps, lr = 20, 0.5

    def lrs(make_scheduler):
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
        scheduler = make_scheduler(optimizer)
        seen = []
        for _ in range(steps):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return seen

    ours = lrs(lambda opt: warmup_cosine(opt, steps, warmup_steps))
    rest = steps - warmup_steps
    cosine = lrs(lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, rest))
    ramp = [lr * (k + 1) / warmup_steps for k in range(warmup_steps)]
    assert ours[:warmup_steps] == pytest.approx(ramp)
    assert ours[warmup_steps:] == pytest.approx(cosine[:rest])


def test_warmup_cosine_rejects_bad_arguments():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(
        ValueError, match="warmup_steps must be fewer than steps=10"
    ):
        warmup_cosine(optimizer, 10, 10)
    with pytest.raises(ValueError, match="warmup_steps must be"):
        warmup_cosine(optimizer, 10, -1)
    with pytest.raises(TypeError, match="optimizer must be a torch optimizer"):
        warmup_cosine("adam", 10)
