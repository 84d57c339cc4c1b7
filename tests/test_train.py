import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minigen.core.runtime import Precision
from minigen.core.train import (EMA, History, NonFiniteLossError, load_checkpoint,
    save_checkpoint, train)

CPU = torch.device("cpu")
FP32 = Precision(CPU, torch.float32)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def regression_data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def mse_closure(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda step: F.mse_loss(model(x), y)


def test_linear_regression_reaches_the_least_squares_solution():
    x, y = regression_data()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    history = train(model, mse_closure(model, x, y), steps=100, optimizer=optimizer, precision=FP32,
                    progress=False)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    least_squares = torch.linalg.lstsq(design, y).solution.squeeze(1)      # argmin ||design @ w - y||
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
        train(model, loss_fn, steps=10, optimizer=optimizer, precision=FP32, progress=False)
    assert isinstance(info.value, RuntimeError)
    assert info.value.step == 3 and not math.isfinite(info.value.loss)
    assert torch.equal(model.weight, weights_seen[3])   # the bad step changed nothing
    assert not model.training                           # the mode it was found in


def test_ema_equals_the_hand_computed_exponential_average():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    decay = 0.9
    ema = EMA(model, decay=decay)
    assert ema.ema_model is ema.module and ema.module is not model
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    expected = [p.detach().clone() for p in model.parameters()]
    for k in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.full_like(p, float(k)) + torch.randn_like(p))
            model[1].running_mean.fill_(10.0 * k)
        ema.update(model)
        expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, model.parameters())]
    for averaged, hand in zip(ema.module.parameters(), expected):
        torch.testing.assert_close(averaged, hand)
    assert torch.equal(ema.module[1].running_mean, torch.full((2,), 40.0))   # buffers are copied


def test_ema_of_a_constant_model_approaches_it_geometrically():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for _ in range(3):
        ema.update(model)
    assert ema.module.weight.item() == pytest.approx(1 - 0.5 ** 3)   # theta_n = theta + decay^n (theta_0 - theta)


def test_ema_state_dict_round_trip_and_validation():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    ema.update(nn.Linear(2, 2))
    restored = EMA(nn.Linear(2, 2), decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.decay == 0.99
    assert all(torch.equal(a, b) for a, b in zip(restored.module.parameters(), ema.module.parameters()))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        EMA(model, decay=1.0)
    with pytest.raises(ValueError, match="differ"):
        ema.update(nn.Linear(2, 2, bias=False))


def test_train_updates_the_ema_after_every_step():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    ema = EMA(model, decay=0.8)
    weights = [model.weight.detach().clone()]      # weights[k]: after k optimizer steps

    def loss_fn(step):
        if step > 0:
            weights.append(model.weight.detach().clone())
        return F.mse_loss(model(x), y)

    train(model, loss_fn, steps=5, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), precision=FP32,
          ema=ema, progress=False)
    weights.append(model.weight.detach().clone())
    expected = weights[0]
    for theta in weights[1:]:
        expected = 0.8 * expected + 0.2 * theta
    torch.testing.assert_close(ema.module.weight, expected)


class Regressor(nn.Module):
    """A small MLP with dropout, so resuming must restore the random state too."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.2), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)


def fresh_run(init_seed: int):
    torch.manual_seed(init_seed)
    model = Regressor()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, decay=0.9)

    def loss_fn(step):
        x = torch.randn(32, 4)   # torch's global generator: a resumed run must draw the same batches
        return F.mse_loss(model(x), x.sum(1, keepdim=True).sin())

    return model, optimizer, ema, loss_fn


def test_resume_from_checkpoint_is_bit_for_bit(tmp_path):
    model, optimizer, ema, loss_fn = fresh_run(0)
    torch.manual_seed(1)
    straight = train(model, loss_fn, steps=10, optimizer=optimizer, precision=FP32, ema=ema, progress=False)

    path = tmp_path / "run.pt"
    first, opt1, ema1, loss1 = fresh_run(0)
    torch.manual_seed(1)
    train(first, loss1, steps=5, optimizer=opt1, precision=FP32, ema=ema1, checkpoint=path,
          checkpoint_every=3, progress=False)
    second, opt2, ema2, loss2 = fresh_run(99)   # other initial weights, overwritten by the checkpoint
    torch.manual_seed(12345)                      # another random state, restored from the checkpoint
    resumed = train(second, loss2, steps=10, optimizer=opt2, precision=FP32, ema=ema2, checkpoint=path,
                    progress=False)

    for a, b in zip(model.parameters(), second.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(ema.module.parameters(), ema2.module.parameters()):
        assert torch.equal(a, b)
    assert resumed.losses == straight.losses and resumed.steps == straight.steps == list(range(10))
    assert load_checkpoint(path, Regressor())["step"] == 10
    assert not list(tmp_path.glob("*.partial"))


def test_a_crash_leaves_the_last_periodic_checkpoint(tmp_path):
    model, optimizer, _, loss_fn = fresh_run(0)

    def crashing(step):
        return loss_fn(step) * (math.nan if step == 5 else 1.0)

    path = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError):
        train(model, crashing, steps=10, optimizer=optimizer, precision=FP32, checkpoint=path,
              checkpoint_every=2, progress=False)
    saved = load_checkpoint(path, Regressor())
    assert saved["step"] == 4 and saved["history"].completed_steps == 4 and saved["history"].steps == [0, 1, 2, 3]


def test_finished_checkpoint_is_not_retrained_and_cannot_go_back(tmp_path):
    model, optimizer, _, loss_fn = fresh_run(0)
    path = tmp_path / "run.pt"
    train(model, loss_fn, steps=4, optimizer=optimizer, precision=FP32, checkpoint=path, progress=False)

    def must_not_run(step):
        raise AssertionError(f"step {step} was trained again")

    history = train(model, must_not_run, steps=4, optimizer=optimizer, precision=FP32, checkpoint=path,
                    progress=False)
    assert history.completed_steps == 4
    with pytest.raises(ValueError, match="already at step 4"):
        train(model, must_not_run, steps=3, optimizer=optimizer, precision=FP32, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="history=None"):
        train(model, must_not_run, steps=8, optimizer=optimizer, precision=FP32, checkpoint=path,
              history=History(), progress=False)


def test_history_continues_where_it_stopped():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(step):
        calls.append(step)
        return F.mse_loss(model(x), y)

    history = train(model, loss_fn, steps=3, optimizer=optimizer, precision=FP32, progress=False)
    again = train(model, loss_fn, steps=5, optimizer=optimizer, precision=FP32, history=history, progress=False)
    assert again is history and calls == [0, 1, 2, 3, 4] and history.steps == [0, 1, 2, 3, 4]


def test_metrics_and_log_every():
    x, y = regression_data()
    model = nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    maes = {}

    def loss_fn(step):
        prediction = model(x)
        maes[step] = (prediction - y).abs().mean().item()
        return F.mse_loss(prediction, y), {"mae": maes[step]}

    history = train(model, loss_fn, steps=10, optimizer=optimizer, precision=FP32, log_every=3, progress=False)
    assert history.steps == [0, 3, 6, 9]
    assert history.metrics == {"mae": [maes[s] for s in (0, 3, 6, 9)]}

    def changing(step):
        return F.mse_loss(model(x), y), ({"mae": 0.0} if step == 0 else {"rmse": 0.0})

    with pytest.raises(ValueError, match="same names"):
        train(model, changing, steps=2, optimizer=optimizer, precision=FP32, progress=False)


def test_model_trains_in_train_mode_and_is_left_as_found():
    x, y = regression_data()
    model = nn.Linear(3, 1).eval()
    modes = []

    def loss_fn(step):
        modes.append(model.training)
        return F.mse_loss(model(x), y)

    train(model, loss_fn, steps=2, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), precision=FP32,
          progress=False)
    assert modes == [True, True] and not model.training


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_grad_clip_bounds_the_update_of_the_true_gradient(dtype):
    """One SGD step with lr 1 moves the weights by exactly the clipped norm; under fp16 that holds only
    if the scaled gradients are unscaled before clipping."""
    x, y = regression_data()
    y = 0.01 * y                       # small errors, so gradients scaled by 2**16 still fit in fp16
    model = nn.Linear(3, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    precision = Precision(CPU, dtype)
    assert precision.grad_scaler().is_enabled() == (dtype is torch.float16)
    train(model, mse_closure(model, x, y), steps=1, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
          precision=precision, grad_clip=1e-3, progress=False)
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

    history = train(model, loss_fn, steps=20, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    precision=Precision(CPU, torch.bfloat16), progress=False)
    assert set(output_dtypes) == {torch.bfloat16}
    assert model.weight.dtype is torch.float32                    # weights stay fp32
    assert all(math.isfinite(v) for v in history.losses) and history.losses[-1] < history.losses[0]


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mixed_precision_training_on_cuda(dtype):
    if dtype is torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("this GPU has no native bf16")
    x, y = (t.cuda() for t in regression_data())
    model = nn.Linear(3, 1).cuda()
    history = train(model, mse_closure(model, x, y), steps=200, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    precision=Precision(torch.device("cuda"), dtype), grad_clip=10.0, progress=False)
    assert history.losses[-1] < 0.05 * history.losses[0]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"steps": 0}, ValueError, "steps must be at least 1"),
    ({"steps": 2.5}, TypeError, "steps must be an int"),
    ({"steps": True}, TypeError, "steps must be an int"),
    ({"steps": 2, "log_every": 0}, ValueError, "log_every"),
    ({"steps": 2, "checkpoint_every": 1}, ValueError, "checkpoint=PATH"),
    ({"steps": 2, "grad_clip": 0.0}, ValueError, "grad_clip"),
    ({"steps": 2, "precision": Precision(torch.device("cuda"), torch.float32)}, ValueError, "model is on cpu"),
])
def test_bad_arguments_fail_early(kwargs, error, message):
    model = nn.Linear(3, 1)
    x, y = regression_data()
    kwargs = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "progress": False, **kwargs}
    with pytest.raises(error, match=message):
        train(model, mse_closure(model, x, y), **kwargs)


@pytest.mark.parametrize("returned, error, message", [
    (lambda out: out.sum().detach(), ValueError, "does not require grad"),
    (lambda out: out.sum(1), ValueError, "scalar"),
    (lambda out: out.sum().item(), TypeError, "scalar tensor"),
    (lambda out: (out.sum(), [1.0]), TypeError, "dict of metrics"),
])
def test_bad_loss_values_fail_early(returned, error, message):
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with pytest.raises(error, match=message):
        train(model, lambda step: returned(model(x)), steps=1, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
              precision=FP32, progress=False)


def test_checkpoint_round_trip_and_missing_parts(tmp_path):
    model = nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters())
    history = History(steps=[0, 1], losses=[2.0, 1.0], metrics={"acc": [0.1, 0.2]}, seconds=3.0, completed_steps=2)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(path, model, step=2, history=history, extra={"note": "hello", "tensor": torch.ones(2)})
    other = nn.Linear(3, 1)
    loaded = load_checkpoint(path, other)
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)
    assert loaded["step"] == 2 and loaded["history"] == history
    assert loaded["extra"]["note"] == "hello" and torch.equal(loaded["extra"]["tensor"], torch.ones(2))
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(path, other, optimizer=optimizer)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), max_size=40), st.integers(1, 12))
def test_smoothed_is_the_trailing_mean(losses, window):
    smoothed = History(steps=list(range(len(losses))), losses=losses).smoothed(window)
    brute = [sum(losses[max(0, i - window + 1):i + 1]) / len(losses[max(0, i - window + 1):i + 1])
             for i in range(len(losses))]
    assert smoothed == pytest.approx(brute, abs=1e-9)


def test_smoothed_rejects_bad_windows():
    with pytest.raises(ValueError, match="positive int"):
        History().smoothed(0)


def test_progress_bar_shows_desc_and_smoothed_loss(capsys):
    x, y = regression_data()
    model = nn.Linear(3, 1)
    train(model, mse_closure(model, x, y), steps=3, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
          precision=FP32, desc="fit")
    bar = capsys.readouterr().err
    assert "fit" in bar and "3/3" in bar and "loss=" in bar


def test_scheduler_steps_once_per_step_and_resumes_from_the_checkpoint(tmp_path):
    def run(steps, path):
        model = nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
        x, y = regression_data()
        train(model, mse_closure(model, x, y), steps=steps, optimizer=optimizer, scheduler=scheduler,
              precision=FP32, checkpoint=path, progress=False)
        return optimizer.param_groups[0]["lr"]

    assert run(4, tmp_path / "a.pt") == 0.5 ** 4               # lr after 4 steps of the schedule
    run(2, tmp_path / "b.pt")
    assert run(4, tmp_path / "b.pt") == 0.5 ** 4               # resumed at step 2, not restarted at 0
