from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import minigen.core.train as core_train
import minigen.models.oracle as oracle_module
from minigen.core.cache import cache_folder
from minigen.core.runtime import Precision
from minigen.data.shapes import ShapesWorld
from minigen.eval.metrics import total_variation
from minigen.models.oracle import (
    ATTRIBUTES,
    Oracle,
    accuracy,
    attribute_frequencies,
    evaluate,
    first_object,
    load_oracle,
    oracle_loss,
    parse,
    train_oracle,
)
from minigen.nn.conv import conv_block

WORLD = ShapesWorld()
FP32 = Precision(torch.device("cpu"), torch.float32)


class PerfectOracle(Oracle):
    """Reads the truth: logits are one-hot copies of the scenes' own cell targets."""

    def __init__(self, world, scenes):
        super().__init__(world)
        self.targets = scenes.cell_targets()

    def forward(self, images):
        classes = {
            "shape": len(self.world.shapes) + 1,
            "colour": len(self.world.colours),
            "size": len(self.world.sizes),
        }
        return {
            name: F.one_hot(self.targets[name].clamp(min=0), n).float()
            for name, n in classes.items()
        }


def test_forward_gives_per_cell_logits_and_rejects_wrong_images():
    oracle = Oracle(WORLD)
    logits = oracle(WORLD.scenes(4).images)
    assert logits["shape"].shape == (4, 9, len(WORLD.shapes) + 1)
    assert logits["colour"].shape == (4, 9, len(WORLD.colours))
    assert logits["size"].shape == (4, 9, len(WORLD.sizes))
    with pytest.raises(
        ValueError, match=r"images of shape \(B, 3, 32, 32\), got \(4, 3, 64, 64\)"
    ):
        oracle(torch.zeros(4, 3, 64, 64))


def test_loss_is_the_mean_cross_entropy_over_the_cells_that_count():
    torch.manual_seed(0)
    scenes = WORLD.scenes(6)
    targets = scenes.cell_targets()
    logits = {
        name: torch.randn(6, 9, n)
        for name, n in (("shape", 6), ("colour", 6), ("size", 2))
    }
    expected = 0.0
    # brute force: average -log p(target) over the cells with a target
    for name in ATTRIBUTES:
        terms = [
            -logits[name][b, c].log_softmax(-1)[t]
            for b in range(6)
            for c in range(9)
            if (t := targets[name][b, c].item()) >= 0
        ]
        expected += sum(terms) / len(terms)
    assert torch.allclose(oracle_loss(logits, targets), expected, atol=1e-5)


def test_accuracy_counts_by_hand():
    n_shapes = 5
    targets = {
        "shape": torch.tensor([[0, 5, 2], [5, 5, 1]]),
        "colour": torch.tensor([[1, -1, 3], [-1, -1, 0]]),
        "size": torch.tensor([[0, -1, 1], [-1, -1, 1]]),
    }
    predicted = {
        "shape": torch.tensor([[0, 5, 3], [5, 4, 1]]),
        "colour": torch.tensor([[1, -1, 3], [-1, 2, 1]]),
        "size": torch.tensor([[0, -1, 1], [-1, 0, 1]]),
    }
    result = accuracy(predicted, targets, n_shapes)
    # objects: (0,0) right, (0,2) wrong, (1,2) right
    assert result["shape"] == pytest.approx(2 / 3)
    assert result["colour"] == pytest.approx(2 / 3)  # (1,2) wrong colour
    assert result["size"] == pytest.approx(1.0)
    # (1,1) read as occupied but is empty
    assert result["cell"] == pytest.approx(5 / 6)
    assert result["scene"] == pytest.approx(0.0)
    assert accuracy(targets, targets, n_shapes) == {
        name: 1.0 for name in (*ATTRIBUTES, "cell", "scene")
    }


def test_read_marks_empty_cells_and_describe_reproduces_captions():
    # one object: caption order cannot differ from cell order
    world = ShapesWorld(max_objects=1)
    scenes = world.scenes(20, split="test")
    oracle = PerfectOracle(world, scenes).train()
    cells = oracle.read(scenes.images)
    assert oracle.training  # read() leaves the mode as it found it
    empty = cells["shape"] == len(world.shapes)
    assert (cells["colour"][empty] == -1).all() and (
        cells["size"][empty] == -1
    ).all()
    assert oracle.describe(scenes.images) == scenes.captions
    assert evaluate(oracle, scenes)["scene"] == 1.0


def test_short_training_lowers_the_loss_and_beats_chance():
    torch.manual_seed(0)
    oracle, history = train_oracle(
        WORLD, steps=60, batch_size=64, lr=3e-3, precision=FP32, progress=False
    )
    first, last = sum(history.losses[:5]) / 5, sum(history.losses[-5:]) / 5
    assert last < 0.3 * first
    scores = evaluate(oracle, WORLD.scenes(500, split="test"))
    assert scores["cell"] > 0.9  # always "empty" would score 1 - 1.5/9 = 0.83
    assert scores["colour"] > 0.5  # chance: 1/6
    assert scores["size"] > 0.7  # chance: 1/2


def test_load_oracle_trains_once_then_loads_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    torch.manual_seed(0)
    trained = load_oracle(WORLD, steps=3, device="cpu", progress=False)
    files = list(tmp_path.glob("oracle-*.pt"))
    assert len(files) == 1 and "3steps" in files[0].name
    loaded = load_oracle(WORLD, steps=3, device="cpu", progress=False)
    images = WORLD.scenes(8, split="test").images
    assert torch.allclose(
        trained.eval()(images)["shape"], loaded(images)["shape"], atol=1e-5
    )
    assert (
        loaded.history.losses == trained.history.losses
        and len(loaded.history.losses) == 3
    )
    # another world, another file
    load_oracle(ShapesWorld(seed=1), steps=3, device="cpu", progress=False)
    assert len(list(tmp_path.glob("oracle-*.pt"))) == 2


# --- judging generated images


class FixedOracle(Oracle):
    """Returns the logits it was given, whatever the images."""

    def __init__(self, world, logits):
        super().__init__(world)
        self.logits = logits

    def forward(self, images):
        return {name: value[: len(images)] for name, value in self.logits.items()}


def sure_logits(scenes, confidence=20.0):
    """Logits whose argmax is the truth with probability ~1 (colour and size of empty cells arbitrary)."""
    targets = scenes.cell_targets()
    classes = {
        "shape": len(WORLD.shapes) + 1,
        "colour": len(WORLD.colours),
        "size": len(WORLD.sizes),
    }
    return {
        name: confidence * F.one_hot(targets[name].clamp(min=0), n).float()
        for name, n in classes.items()
    }


def test_parse_reads_confident_logits_as_the_truth():
    scenes = WORLD.scenes(8)
    result = parse(FixedOracle(WORLD, sure_logits(scenes)), scenes.images)
    for name, target in scenes.cell_targets().items():
        assert torch.equal(result[name], target)
    assert result["valid"].all() and result["confident"].all()
    assert torch.equal(result["count"], scenes.count)


def test_parse_flags_unsure_cells_counts_and_ignores_attributes_of_empty_cells():
    scenes = WORLD.scenes(4)
    logits = sure_logits(scenes)
    empty = scenes.cell_targets()["shape"] == len(WORLD.shapes)  # (4, 9)
    logits["colour"][:3][empty[:3]] = 0.0  # uniform colour in empty cells: fine
    first_object = (~empty[1]).nonzero()[0, 0]
    logits["colour"][1, first_object] = 0.0  # image 1: unsure colour of an object
    logits["shape"][2, :, :] = 0.0
    logits["shape"][2, :, len(WORLD.shapes)] = (
        20.0  # image 2: surely empty everywhere
    )
    logits["shape"][3, :, :] = 0.0
    logits["shape"][3, :, 0] = 20.0  # image 3: nine objects
    result = parse(FixedOracle(WORLD, logits), scenes.images)
    assert result["confident"].tolist() == [True, False, True, True]
    assert result["count"].tolist()[2:] == [0, 9]
    # 0 and 9 objects lie outside 1..2
    assert result["valid"].tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_parse_threshold_is_a_probability():
    scenes = WORLD.scenes(2)
    # p(argmax) = e^2 / (e^2 + K - 1)
    oracle = FixedOracle(WORLD, sure_logits(scenes, confidence=2.0))
    p_shape = torch.tensor(2.0).exp() / (
        torch.tensor(2.0).exp() + len(WORLD.shapes)
    )
    assert parse(oracle, scenes.images, threshold=p_shape.item() - 1e-4)[
        "confident"
    ].all()
    assert not parse(oracle, scenes.images, threshold=p_shape.item() + 1e-4)[
        "confident"
    ].any()
    with pytest.raises(ValueError, match="threshold"):
        parse(oracle, scenes.images, threshold=1.0)


def test_attribute_frequencies_count_objects_not_cells():
    scenes = WORLD.scenes(500)
    frequencies = attribute_frequencies(scenes.cell_targets(), WORLD)
    objects = scenes.shape[scenes.shape >= 0]  # every object's shape index
    expected = torch.bincount(objects, minlength=len(WORLD.shapes)).double() / len(
        objects
    )
    assert torch.allclose(frequencies["shape"], expected)
    for name in ATTRIBUTES:
        assert frequencies[name].sum().item() == pytest.approx(1.0)
    nothing = {
        name: torch.full((3, 9), len(WORLD.shapes) if name == "shape" else -1)
        for name in ATTRIBUTES
    }
    assert all(f.sum() == 0 for f in attribute_frequencies(nothing, WORLD).values())


def test_total_variation():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert total_variation(p, q) == pytest.approx(0.5)
    assert total_variation(p, p) == 0.0
    assert total_variation(
        torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    ) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        total_variation(p, torch.ones(2))


def test_first_object_reads_the_first_occupied_cell_and_marks_empty_images():
    n_shapes = len(WORLD.shapes)
    cells = {
        "shape": torch.full((3, 9), n_shapes),
        "colour": torch.full((3, 9), -1),
        "size": torch.full((3, 9), -1),
    }
    # image 0: one object in cell 4
    cells["shape"][0, 4], cells["colour"][0, 4], cells["size"][0, 4] = (
        2,
        5,
        1,
    )
    # image 1: two objects,
    cells["shape"][1, 7], cells["colour"][1, 7], cells["size"][1, 7] = (
        0,
        0,
        0,
    )
    # the first in cell 7
    cells["shape"][1, 8], cells["colour"][1, 8], cells["size"][1, 8] = (
        3,
        1,
        1,
    )
    first = first_object(cells, WORLD)  # image 2: nothing
    assert first["shape"].tolist() == [2, 0, -1]
    assert first["colour"].tolist() == [5, 0, -1]
    assert first["size"].tolist() == [1, 0, -1]


# --- seeds, the cache, resuming, argument checks ---


TINY = dict(batch_size=4, width=4, precision=FP32, progress=False)


def weights(model):
    return [t.clone() for t in model.state_dict().values()]


def test_train_oracle_is_reproducible_and_the_seed_sets_the_initial_weights(
    monkeypatch,
):
    first, history = train_oracle(WORLD, 2, seed=0, **TINY)
    torch.manual_seed(123)  # the global state does not matter
    again, history_again = train_oracle(WORLD, 2, seed=0, **TINY)
    assert all(torch.equal(a, b) for a, b in zip(weights(first), weights(again)))
    assert history.losses == history_again.losses
    initial = {}
    real_train = oracle_module.train

    def record_initial(model, *args, **kwargs):
        initial[kwargs["desc"], len(initial)] = weights(model)
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(oracle_module, "train", record_initial)
    train_oracle(WORLD, 1, seed=0, **TINY)
    train_oracle(WORLD, 1, seed=1, **TINY)
    seed0, seed1 = initial.values()
    # another seed, other initial weights
    assert not torch.equal(seed0[0], seed1[0])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": None}, TypeError, "batch_size must be an int, got None"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1"),
        ({"width": 10**9}, ValueError, "width must be an int <= 1,000,000"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"lr": float("nan")}, ValueError, "lr must be a finite number"),
        ({"progress": "no"}, TypeError, "progress must be True or False"),
        ({"world": "shapes"}, TypeError, "world must be ShapesWorld"),
    ],
)
def test_train_oracle_fails_fast_on_bad_arguments(
    kwargs, error, message, monkeypatch
):
    monkeypatch.setattr(
        oracle_module, "train", lambda *a, **k: pytest.fail("training started")
    )
    arguments = {"world": WORLD, "steps": 2, **TINY, **kwargs}
    with pytest.raises(error, match=message):
        train_oracle(**arguments)


def test_the_cache_key_holds_the_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path))
    zero = load_oracle(WORLD, steps=1, width=4, device="cpu", progress=False)
    one = load_oracle(WORLD, steps=1, width=4, device="cpu", progress=False, seed=1)
    names = sorted(path.name for path in tmp_path.glob("oracle-*.pt"))
    assert len(names) == 2 and "seed0" in names[0] and "seed1" in names[1]
    assert not torch.equal(zero.features[0][0].weight, one.features[0][0].weight)
    # the unfinished checkpoint is gone
    assert not list(tmp_path.glob("*.training.pt"))


def test_an_empty_minigen_cache_is_an_error_not_the_current_folder(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIGEN_CACHE", "")
    monkeypatch.setattr(
        oracle_module,
        "train_oracle",
        lambda *a, **k: pytest.fail("training started"),
    )
    with pytest.raises(ValueError, match="MINIGEN_CACHE is set but empty"):
        load_oracle(WORLD, steps=1, device="cpu", progress=False)
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("MINIGEN_CACHE", "   ")
    with pytest.raises(ValueError, match="MINIGEN_CACHE is set but empty"):
        cache_folder()
    monkeypatch.delenv("MINIGEN_CACHE")
    assert cache_folder() == Path.home() / ".cache" / "minigen"


def test_an_unwritable_cache_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINIGEN_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(
        oracle_module,
        "train_oracle",
        lambda *a, **k: pytest.fail("training started"),
    )
    with pytest.raises(
        OSError,
        match=r"cannot write the trained oracle into this folder .*MINIGEN_CACHE.*a_file/cache",
    ):
        load_oracle(WORLD, steps=1, device="cpu", progress=False)
    with pytest.raises(OSError, match="cannot write the trained oracle") as error:
        load_oracle(
            WORLD, steps=1, device="cpu", progress=False, path=blocker / "oracle.pt"
        )
    # the folder is the OSError's filename, as open() would give it
    assert error.value.filename == str(blocker)


class Interrupted(BaseException):
    """Stands in for a Colab disconnect right after a checkpoint was written."""


def test_an_interrupted_load_oracle_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path / "straight"))
    straight = load_oracle(WORLD, steps=3, width=4, device="cpu", progress=False)

    monkeypatch.setenv("MINIGEN_CACHE", str(tmp_path / "resumed"))
    monkeypatch.setattr(oracle_module, "CACHE_CHECKPOINT_EVERY", 1)
    save = core_train.save_checkpoint

    def save_then_disconnect(*args, **kwargs):
        save(*args, **kwargs)
        raise Interrupted

    monkeypatch.setattr(core_train, "save_checkpoint", save_then_disconnect)
    with pytest.raises(Interrupted):
        load_oracle(WORLD, steps=3, width=4, device="cpu", progress=False)
    unfinished = list((tmp_path / "resumed").glob("*.training.pt"))
    assert len(unfinished) == 1 and not list(
        (tmp_path / "resumed").glob("*steps-seed0-????????????.pt")
    )
    monkeypatch.setattr(core_train, "save_checkpoint", save)
    steps_run = []
    real_step = core_train._optimizer_step
    monkeypatch.setattr(
        core_train,
        "_optimizer_step",
        lambda step, *a: steps_run.append(step) or real_step(step, *a),
    )
    resumed = load_oracle(WORLD, steps=3, width=4, device="cpu", progress=False)
    assert steps_run == [1, 2]  # step 0 came from the checkpoint
    assert all(
        torch.equal(a, b) for a, b in zip(weights(straight), weights(resumed))
    )
    assert resumed.history.losses == straight.history.losses
    assert not unfinished[0].exists()


def test_oracle_constructor_and_reading_check_their_inputs():
    with pytest.raises(TypeError, match="world must be ShapesWorld"):
        Oracle("world")
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        Oracle(WORLD, width=0)
    oracle = Oracle(WORLD, width=4)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        oracle([[0.0]])
    with pytest.raises(TypeError, match="floating-point"):
        oracle(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    images = WORLD.scenes(2).images
    for threshold in (float("nan"), 0.0, 1.0):
        with pytest.raises(ValueError, match="threshold"):
            parse(oracle, images, threshold=threshold)
    with pytest.raises(ValueError, match="at least one image"):
        parse(oracle, images[:0])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        parse(oracle, images, batch_size=0)
    with pytest.raises(TypeError, match="scenes must be Scenes"):
        evaluate(oracle, images)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        evaluate(oracle, WORLD.scenes(2), batch_size=0)


def test_parse_reads_in_eval_mode_and_leaves_the_mode_as_found():
    torch.manual_seed(0)
    oracle = Oracle(WORLD, width=4)
    images = WORLD.scenes(8).images
    with torch.no_grad():
        # batch-norm running statistics move away from the defaults
        oracle.train()(images)
        expected = oracle.eval()(images)["shape"].softmax(-1).max(-1).indices
    oracle.train()
    result = parse(oracle, images)
    assert oracle.training and all(m.training for m in oracle.modules())
    # batch norm used its running statistics
    assert torch.equal(result["shape"], expected)


# --- bad input at the entry points: a clear TypeError or ValueError, never silence ---


def empty_cells(n: int = 2) -> dict[str, torch.Tensor]:
    return {
        name: torch.full((n, 9), len(WORLD.shapes) if name == "shape" else -1)
        for name in ATTRIBUTES
    }


def test_load_oracle_names_a_path_under_a_file():
    with pytest.raises(
        NotADirectoryError, match="cannot write the trained oracle"
    ) as error:
        load_oracle(
            WORLD,
            steps=1,
            device="cpu",
            progress=False,
            path="/dev/null/x/oracle.pt",
        )
    assert error.value.filename == "/dev/null/x"


def test_conv_block_checks_its_widths():
    assert conv_block(3, 8)[0].weight.shape == (8, 3, 3, 3)
    with pytest.raises(TypeError, match="c_in must be an int, got float"):
        conv_block(3.5, 8)
    with pytest.raises(TypeError, match="c_out must be an int, got None"):
        conv_block(3, None)
    with pytest.raises(ValueError, match="c_in must be an int >= 1, got -1"):
        conv_block(-1, 8)


@pytest.mark.parametrize(
    "change, error, message",
    [
        (lambda d: 42, TypeError, "targets must be a dict of per-cell labels"),
        (
            lambda d: {},
            ValueError,
            "targets must hold per-cell labels for shape, colour, size; shape, colour, size missing",
        ),
        (
            lambda d: {**d, "size": None},
            TypeError,
            r"targets\['size'\] must be a torch.Tensor",
        ),
        (
            lambda d: {**d, "colour": d["colour"].float()},
            TypeError,
            r"targets\['colour'\] must hold integer labels",
        ),
        (
            lambda d: {**d, "size": d["size"][:, :4]},
            ValueError,
            r"targets\['size'\] must have shape \(N, G\*G\) = \(2, 9\)",
        ),
        (
            lambda d: {**d, "shape": d["shape"] + 1},
            ValueError,
            r"targets\['shape'\] must hold labels in \[0, 5\], got values from 6 to 6",
        ),
        (
            lambda d: {**d, "colour": d["colour"] - 1},
            ValueError,
            r"targets\['colour'\] must hold labels >= -1",
        ),
    ],
)
def test_accuracy_checks_its_label_dicts(change, error, message):
    targets = empty_cells()
    assert accuracy(targets, targets, len(WORLD.shapes))["scene"] == 1.0
    with pytest.raises(error, match=message):
        accuracy(targets, change(targets), len(WORLD.shapes))


def test_accuracy_checks_n_shapes_and_that_predictions_match_the_targets():
    targets = empty_cells()
    for bad, error in ((True, TypeError), (3.5, TypeError), (-1, ValueError)):
        with pytest.raises(error, match="n_shapes must be an int"):
            accuracy(targets, targets, bad)
    wrong = {name: labels[:1] for name, labels in targets.items()}
    with pytest.raises(
        ValueError,
        match=r"predicted\['shape'\] must have shape \(N, G\*G\) = \(2, 9\)",
    ):
        accuracy(wrong, targets, len(WORLD.shapes))


def test_oracle_loss_checks_logits_and_targets():
    targets = WORLD.scenes(2).cell_targets()
    logits = {
        name: torch.randn(2, 9, n)
        for name, n in (("shape", 6), ("colour", 6), ("size", 2))
    }
    assert oracle_loss(logits, targets).ndim == 0
    with pytest.raises(TypeError, match="logits must be a dict of per-cell logits"):
        oracle_loss(None, targets)
    with pytest.raises(
        ValueError, match="targets must hold per-cell targets .* shape missing"
    ):
        oracle_loss(logits, {k: v for k, v in targets.items() if k != "shape"})
    with pytest.raises(
        TypeError,
        match=r"logits\['size'\] must be floating point and targets\['size'\] integer",
    ):
        oracle_loss(logits, {**targets, "size": targets["size"].float()})
    with pytest.raises(
        ValueError, match=r"logits\['colour'\] must be \(B, G\*G, classes\)"
    ):
        oracle_loss({**logits, "colour": logits["colour"][:1]}, targets)


def test_first_object_and_frequencies_check_the_world_and_the_label_range():
    cells = empty_cells()
    with pytest.raises(TypeError, match="world must be ShapesWorld, got NoneType"):
        first_object(cells, None)
    with pytest.raises(TypeError, match="cells must be a dict of per-cell labels"):
        attribute_frequencies([1], WORLD)
    # a colour index past the palette would have lengthened the frequency vector
    cells["shape"][0, 0], cells["colour"][0, 0], cells["size"][0, 0] = (
        0,
        len(WORLD.colours),
        0,
    )
    first_object(cells, WORLD)  # reads it back as it is
    with pytest.raises(
        ValueError,
        match=rf"cells\['colour'\] must hold labels in \[-1, {len(WORLD.colours) - 1}\]",
    ):
        attribute_frequencies(cells, WORLD)
