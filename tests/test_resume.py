"""Every trainer resumes bit for bit from its checkpoint, and checks its arguments up front.

The main test kills a training subprocess with SIGKILL once its first checkpoint exists,
resumes the same call in a new subprocess, and compares the final weights, the EMA weights
and the logged losses bit for bit with one uninterrupted run. This file is also the child
script: `python tests/test_resume.py TRAINER OUT [CHECKPOINT]`.
"""

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import minigen.core.train as core_train
from minigen.core.runtime import choose_precision
from minigen.data.shapes import ShapesWorld

FP32 = choose_precision("cpu", dtype="fp32")
WORLD = ShapesWorld()
STEPS = 6
PAUSE_ENV = "MINIGEN_TEST_PAUSE_AFTER_CHECKPOINT"  # seconds the child sleeps after each save


def tiny_digits() -> torch.Tensor:
    """16 one-channel 8x8 images in [0, 1], a stand-in for MNIST."""
    return torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(7))


def run_oracle(**checkpointing):
    from minigen.models.oracle import train_oracle

    model, history = train_oracle(
        WORLD,
        STEPS,
        batch_size=4,
        width=4,
        precision=FP32,
        progress=False,
        seed=3,
        **checkpointing,
    )
    return model, None, history


def run_autoencoder(**checkpointing):
    from minigen.models.autoencoder import train_autoencoder

    # noise_std > 0: the loss draws from torch's global generator
    model, history = train_autoencoder(
        WORLD,
        4,
        STEPS,
        batch_size=4,
        noise_std=0.2,
        widths=(4, 8),
        precision=FP32,
        progress=False,
        seed=1,
        **checkpointing,
    )
    return model, None, history


def run_vae(**checkpointing):
    from minigen.models.vae import train_vae

    # tensor data and binarize: two private generators, besides reparameterize's global one
    model, history = train_vae(
        tiny_digits(),
        2,
        STEPS,
        batch_size=4,
        widths=(4,),
        binarize=True,
        kl_warmup=3,
        precision=FP32,
        progress=False,
        seed=2,
        **checkpointing,
    )
    return model, None, history


def run_upsampler(**checkpointing):
    from minigen.models.upsampler import train_upsampler

    model, history = train_upsampler(
        "resize-conv nearest",
        WORLD,
        STEPS,
        batch_size=4,
        channels=4,
        precision=FP32,
        progress=False,
        seed=4,
        **checkpointing,
    )
    return model, None, history


def run_diffusion(**checkpointing):
    from minigen.diffusion.schedule import NoiseSchedule
    from minigen.diffusion.training import train_diffusion
    from minigen.models.unet import UNet

    def batches(step):
        g = torch.Generator().manual_seed(step)
        return torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randint(
            0, 3, (4, 1), generator=g
        )

    torch.manual_seed(5)
    model = UNet(
        in_channels=1,
        base_channels=8,
        channel_mults=(1,),
        attention_levels=(),
        image_size=8,
        class_counts=(3,),
        heads=1,
    )
    # cond_dropout > 0: the loss draws from the trainer's private dropout generator
    ema, history = train_diffusion(
        model,
        NoiseSchedule.cosine(20),
        batches,
        STEPS,
        cond_dropout=0.5,
        ema_decay=0.8,
        precision=FP32,
        progress=False,
        seed=6,
        **checkpointing,
    )
    return model, ema, history


TRAINERS = {
    "oracle": run_oracle,
    "autoencoder": run_autoencoder,
    "vae": run_vae,
    "upsampler": run_upsampler,
    "diffusion": run_diffusion,
}


def outcome(model, ema, history) -> dict:
    """What must match bit for bit: weights (and buffers), EMA weights, the History."""
    return {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "ema": None
        if ema is None
        else {k: v.clone() for k, v in ema.state_dict().items()},
        "steps": history.steps,
        "losses": history.losses,
        "metrics": history.metrics,
        "completed_steps": history.completed_steps,
    }


def assert_identical(got: dict, expected: dict) -> None:
    for part in ("model", "ema"):
        if expected[part] is None:
            assert got[part] is None
            continue
        assert got[part].keys() == expected[part].keys()
        for name, tensor in expected[part].items():
            assert torch.equal(got[part][name], tensor), f"{part} {name} differs"
    for key in ("steps", "losses", "metrics", "completed_steps"):
        assert got[key] == expected[key], key
    assert expected["completed_steps"] == STEPS and all(
        math.isfinite(v) for v in expected["losses"]
    )


def _pause_after_each_checkpoint(seconds: float) -> None:
    """Slow the child down after each checkpoint it writes, so that the kill lands mid-run."""
    save = core_train.save_checkpoint

    def save_then_pause(*args, **kwargs):
        save(*args, **kwargs)
        time.sleep(seconds)

    core_train.save_checkpoint = save_then_pause


def child(trainer: str, out: str, checkpoint: str | None) -> None:
    """Run one trainer (resuming from `checkpoint` if it exists) and save its outcome; when
    resuming, also run it once without a checkpoint, for reference."""
    if PAUSE_ENV in os.environ:
        _pause_after_each_checkpoint(float(os.environ[PAUSE_ENV]))
    results = {}
    if checkpoint is not None:
        results["resumed"] = outcome(
            *TRAINERS[trainer](checkpoint=checkpoint, checkpoint_every=2)
        )
    results["straight"] = outcome(*TRAINERS[trainer]())
    torch.save(results, out)


def spawn(*args: str, pause: float | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pause is not None:
        env[PAUSE_ENV] = str(pause)
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_killed_training_resumes_bit_for_bit(trainer, tmp_path):
    checkpoint = tmp_path / "run.pt"
    doomed = spawn(
        trainer, str(tmp_path / "unused.pt"), str(checkpoint), pause=30.0
    )
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        if doomed.poll() is not None:
            pytest.fail(
                f"the training subprocess ended before its first checkpoint:\n{doomed.stderr.read()}"
            )
        if time.monotonic() > deadline:
            doomed.kill()
            pytest.fail("no checkpoint after 120 s")
        time.sleep(0.02)
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate()
    assert doomed.returncode == -signal.SIGKILL
    killed_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < killed_at < STEPS  # the kill interrupted the training

    out = tmp_path / "out.pt"
    resumed = spawn(trainer, str(out), str(checkpoint))
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    results = torch.load(out, weights_only=True)
    assert_identical(results["resumed"], results["straight"])
    assert torch.load(checkpoint, weights_only=True)["step"] == STEPS


class Interrupted(BaseException):
    """Stands in for a kill: raised right after a checkpoint was written."""


def _interrupt_after_first_checkpoint(monkeypatch):
    """Make the next checkpoint the last thing training does; returns the undo."""
    save = core_train.save_checkpoint

    def save_then_interrupt(*args, **kwargs):
        save(*args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(core_train, "save_checkpoint", save_then_interrupt)
    return lambda: monkeypatch.setattr(core_train, "save_checkpoint", save)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_interrupted_training_resumes_bit_for_bit_in_process(
    trainer, tmp_path, monkeypatch
):
    run = TRAINERS[trainer]
    straight = outcome(*run())
    checkpoint = tmp_path / "run.pt"
    restore = _interrupt_after_first_checkpoint(monkeypatch)
    # another global random state; the checkpoint restores its own
    torch.manual_seed(999)
    with pytest.raises(Interrupted):
        run(checkpoint=checkpoint, checkpoint_every=2)
    restore()
    assert torch.load(checkpoint, weights_only=True)["step"] == 2
    torch.manual_seed(12345)
    resumed = outcome(*run(checkpoint=checkpoint, checkpoint_every=2))
    assert_identical(resumed, straight)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_finished_checkpoint_returns_the_same_result_without_training(
    trainer, tmp_path, monkeypatch
):
    run = TRAINERS[trainer]
    checkpoint = tmp_path / "run.pt"
    first = outcome(*run(checkpoint=checkpoint))

    def no_step(*args, **kwargs):
        raise AssertionError("a finished training took another step")

    monkeypatch.setattr(core_train, "_optimizer_step", no_step)
    again = outcome(*run(checkpoint=checkpoint))
    assert_identical(again, first)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"checkpoint_every": 0, "checkpoint": "x.pt"},
            ValueError,
            "checkpoint_every must be an int >= 1",
        ),
        ({"checkpoint_every": 2}, ValueError, "checkpoint=PATH"),
        ({"checkpoint": 3}, TypeError, "checkpoint must be a file path"),
        ({"checkpoint": ""}, ValueError, "checkpoint must be a file path"),
    ],
)
def test_trainers_check_checkpoint_arguments_up_front(
    trainer, kwargs, error, message, monkeypatch
):
    def no_training(*args, **kw):
        raise AssertionError("training started despite bad arguments")

    monkeypatch.setattr(core_train, "_optimizer_step", no_training)
    with pytest.raises(error, match=message):
        TRAINERS[trainer](**kwargs)


def test_a_corrupt_checkpoint_stops_the_trainer_with_its_name(tmp_path):
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(b"")
    with pytest.raises(
        ValueError, match=rf"{checkpoint} is not a valid checkpoint"
    ):
        run_vae(checkpoint=checkpoint)


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
