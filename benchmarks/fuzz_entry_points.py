"""Bad-input fuzz of minigen's public entry points: does a wrong argument get a clear error?

Run by hand (not in CI), about a minute here (three on the pre-reorganisation code):
    .venv/bin/python benchmarks/fuzz_entry_points.py [--package-root PATH] [--top 40]
        [--only KEY,KEY] [--json calls.json]

It walks every module of the `minigen` package found under --package-root (default: this
checkout) with pkgutil.walk_packages, so it works on any layout, e.g. the pre-reorganisation
commit in a worktree (`git worktree add /tmp/old_minigen d22139e`), and the before and after
figures come from one script. It collects the public functions and classes defined in each
module, the public methods of those classes (and the `forward` of nn.Modules, called as
`instance(...)`), builds a valid call for each from a table of example values (a ShapesWorld,
tensors (2, 3, 8, 8), NoiseSchedule.linear(10), tiny models, one training step), checks that
the valid call works (the baseline), then replaces ONE argument at a time by a bad value
derived from the parameter's annotation:

    int     "x", None, [1], True, 3.5, 0, -1, 10**9
    float   "x", None, [1], True, nan, inf, -inf, -1.0, 0.0, 1e9
    bool    "no", 1, None
    str     3, None, "nonsense", ""
    Tensor  "x", None, a nested list, empty, wrong shape, wrong dtype, huge values, NaN
    objects (model, schedule, world, generator, precision, device, path, ...): a str, 42,
            None, the wrong kind of object (a model's class, an nn.Linear, a dtype, object())

(None is skipped where the annotation allows it, a list where a sequence is expected, and
so on.) Each call is classified:

    clear     TypeError/ValueError raised by a `raise` statement in a minigen frame, an
              exception class defined in minigen, or an OSError that names the file
    raw       any other exception (torch/numpy/Python internals, AttributeError, KeyError...)
    returned  no error. When the bad value is invalid (NaN or inf, a truthy string for a
              bool, a wrong type, a negative size, an unknown choice, a negative value of a
              parameter in NONNEGATIVE_FLOATS, NaN in a tensor given to a trainer or a
              constructor or to a parameter whose huge values get a clear ValueError, i.e. a
              range-checked one) it also counts as a SILENT ACCEPT
    timeout   no answer within CALL_SECONDS; a worker that hangs in C or dies is killed
              after HARD_SECONDS and the call counts as a timeout too

Calls run in a forked worker (CPU, one thread, an address-space limit, matplotlib's Agg
backend, MINIGEN_CACHE and the working directory in a temporary folder), so that a crash or a
hang costs one call, not the run. Also fuzzed: the environment variables the package reads
(MINIGEN_*), set to "", "   " and "nonsense", with the public functions of the module that
reads them (see ENV_KINDS for which values are invalid).
Not fuzzed (listed in the output): constructors of record classes (dataclasses and
NamedTuples without checks of their own, which the package builds; their methods are
fuzzed), the validators module (the checking tool itself, see tests/test_validators.py),
`check_inputs` methods (they run as forward pre-hooks, so `forward` covers them), and
callables whose valid call fails (the baseline).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import linecache
import math
import os
import pkgutil
import re
import select
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")  # figures are drawn off screen
from matplotlib import pyplot as plt  # noqa: E402

CALL_SECONDS = 2  # per-call limit (signal.setitimer)
BASELINE_SECONDS = (
    15  # a first call also pays one-time costs (first conv, first LBFGS)
)
HARD_SECONDS = 30  # a worker silent for this long is killed (a hang in C, a crash)
MEMORY_LIMIT = 6 << 30  # bytes of address space above what the imports take
SKIP_MODULES = ("validators",)
# int parameters for which a negative value is legitimate
SIGNED_INTS = {"t_prev", "dim", "start", "offset", "unit", "output_pixel"}
# float parameters that must not be negative
NONNEGATIVE_FLOATS = {
    "lr", "eta", "clip", "std", "noise_std", "dropout", "label_dropout", "cond_dropout",
    "beta", "decay",
    "ema_decay", "grad_clip", "max_value", "threshold", "scale", "sigma", "l2", "jitter",
    "min_snr_gamma", "cutoff", "span", "interval", "tau", "value",
}  # fmt: skip
# str parameters that are free text rather than a choice among names
FREE_TEXT = {"desc", "suptitle", "title", "code", "message", "label", "cmap"}
FREE_TEXT_OF = {("Layer", "name"), ("CheckResult", "name"), ("per_axis", "name"),
                ("check_condition", "name")}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Discovery (parent process: imports only, no tensor work before the fork)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """One callable to fuzz: a function, a class (its constructor) or a method."""

    key: str  # "minigen.data.shapes.render", "minigen.x.UNet.forward"
    name: str  # short name used by the tables: "render", "UNet", "UNet.forward"
    module: str
    kind: str  # "function", "class", "classmethod", "method", "forward"
    owner: str = ""  # the class name, for methods


def import_package(root: Path):
    sys.path.insert(0, str(root))
    for name in [
        m for m in sys.modules if m == "minigen" or m.startswith("minigen.")
    ]:
        del sys.modules[name]
    import minigen

    where = Path(minigen.__file__).resolve().parent
    if where != (root / "minigen").resolve():
        raise SystemExit(f"imported minigen from {where}, not from {root}")
    modules = {}
    for info in pkgutil.walk_packages(minigen.__path__, "minigen."):
        try:
            modules[info.name] = importlib.import_module(info.name)
            # the source as imported
            linecache.getlines(modules[info.name].__file__)
        except Exception as error:  # a module that does not import is a finding too
            print(f"cannot import {info.name}: {type(error).__name__}: {error}")
    return minigen, modules


def is_record(cls: type) -> bool:
    """A data holder without checks of its own: built by the package, not an entry point."""
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        return True
    return dataclasses.is_dataclass(cls) and "__post_init__" not in vars(cls)


def discover(modules: dict) -> tuple[list[Target], dict, list[str]]:
    targets, objects, skipped = [], {}, []
    for module_name, module in modules.items():
        if module_name.rsplit(".", 1)[-1] in SKIP_MODULES:
            skipped.append(f"{module_name}: the validators themselves")
            continue
        for name, obj in sorted(vars(module).items()):
            if (
                name.startswith("_")
                or getattr(obj, "__module__", None) != module_name
            ):
                continue
            if inspect.isfunction(obj):
                targets.append(
                    Target(f"{module_name}.{name}", name, module_name, "function")
                )
                objects[f"{module_name}.{name}"] = obj
            elif inspect.isclass(obj):
                if issubclass(obj, BaseException):
                    continue
                key = f"{module_name}.{name}"
                objects[key] = obj
                if is_record(obj):
                    skipped.append(
                        f"{key}: a record (no checks of its own); methods fuzzed"
                    )
                else:
                    targets.append(Target(key, name, module_name, "class"))
                for attr, member in vars(obj).items():
                    if (
                        attr.startswith("_")
                        and attr != "forward"
                        or attr == "check_inputs"
                    ):
                        continue  # check_inputs runs as forward's pre-hook: fuzzed there
                    if attr == "forward" and not issubclass(obj, torch.nn.Module):
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        kind = "classmethod"
                    elif inspect.isfunction(member):
                        kind = "forward" if attr == "forward" else "method"
                    else:
                        continue  # properties, constants
                    targets.append(
                        Target(
                            f"{key}.{attr}",
                            f"{name}.{attr}",
                            module_name,
                            kind,
                            owner=key,
                        )
                    )
    return targets, objects, skipped


# ---------------------------------------------------------------------------------------------
# Annotations -> kinds of parameter
# ---------------------------------------------------------------------------------------------

MODEL_CLASSES = (
    "Module",
    "Autoencoder",
    "VAE",
    "UNet",
    "Oracle",
    "Upsampler2x",
    "ToyDenoiser",
)


def split_union(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(" and 1 or (char in "])" and -1 or 0)
        if char == "|" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [part for part in parts + [current.strip()] if part]


def kinds_of(annotation) -> tuple[set[str], bool]:
    """The kinds a parameter accepts, from its annotation (a string under PEP 563)."""
    if annotation is inspect.Parameter.empty:
        return {"any"}, False
    text = (
        annotation
        if isinstance(annotation, str)
        else getattr(annotation, "__name__", str(annotation))
    )
    text = text.replace("typing.", "").replace("Optional[", "None | ")
    kinds, optional = set(), False
    for part in split_union(text):
        base = part.split("[")[0].split(".")[-1]
        if part == "None":
            optional = True
        elif base in ("int", "IntPair", "Size"):
            kinds |= {"int"} | ({"int_pair"} if base != "int" else set())
        elif base == "float":
            kinds.add("float")
        elif base == "bool":
            kinds.add("bool")
        elif base == "str":
            kinds.add("str")
        elif base == "Tensor":
            kinds.add("tensor")
        elif base in ("Path", "PathLike"):
            kinds.add("path")
        elif base == "device":
            kinds.add("device")
        elif base == "Generator":
            kinds.add("generator")
        elif base in ("Sequence", "list", "tuple"):
            inner = part[part.find("[") + 1 : -1] if "[" in part else ""
            if "int" in inner and "str" not in inner:
                kinds.add("seq_int")
            elif inner.startswith("str"):
                kinds.add("seq_str")
            elif "Tensor" in inner or "Generator" in inner:
                kinds.add("seq_obj")
            else:
                kinds.add("seq")
        elif base in ("Callable", "GradientEstimator", "LossOutput"):
            kinds.add("callable")
        elif base in ("dict", "Mapping"):
            kinds.add("dict")
        elif base in MODEL_CLASSES:
            kinds.add("model")
        elif base in ("Any", "T", "object", "ImageLike", "PaddingMode"):
            kinds.add("any")
        else:
            kinds.add("object:" + base)
    return kinds or {"any"}, optional


# ---------------------------------------------------------------------------------------------
# Bad values: (label, invalid?) per kind; the worker turns a label into a value
# ---------------------------------------------------------------------------------------------


def bad_labels(
    target: Target, param: str, kinds: set[str], optional: bool
) -> list[tuple[str, bool]]:
    labels: list[tuple[str, bool]] = []
    short = target.name.split(".")[0]
    typed = kinds - {"any"}
    if not typed:
        return []
    sequence = kinds & {"seq_int", "seq_str", "seq", "seq_obj", "int_pair"}
    if not kinds & {"str", "path", "device", "any"}:
        labels.append(("str 'x'", True))
    if not optional:
        labels.append(("None", True))
    if not sequence and not kinds & {"tensor", "dict", "callable"}:
        labels.append(("list [1]", True))
    if "int" in kinds or "float" in kinds:
        if "bool" not in kinds:
            labels.append(("bool True", True))
    if "int" in kinds and "float" not in kinds:
        labels += [("float 3.5", True), ("int 0", False)]
        labels += [("int -1", param not in SIGNED_INTS), ("int 10**9", False)]
    if "float" in kinds:
        labels += [("float nan", True), ("float inf", True), ("float -inf", True)]
        labels += [
            ("float -1.0", param in NONNEGATIVE_FLOATS),
            ("float 0.0", False),
        ]
        labels += [("float 1e9", False)]
    if "bool" in kinds and "int" not in kinds:
        labels += [("str 'no'", True), ("int 1", True)]
    if "str" in kinds and "path" not in kinds:  # a path is text of any kind
        free = param in FREE_TEXT or (short, param) in FREE_TEXT_OF
        if not kinds & {"int", "float", "tensor"}:
            labels.append(("int 3", True))
        labels += [("str 'nonsense'", not free), ("str ''", not free)]
    if "tensor" in kinds:
        trainer = target.kind == "class" or short.startswith("train")
        labels += [("list [[1.0]]", False), ("tensor empty", False)]
        labels += [("tensor wrong shape", False), ("tensor wrong dtype", False)]
        labels += [("tensor huge", False), ("tensor nan", trainer)]
    if "model" in kinds:
        labels += [
            ("int 42", True),
            ("model class", True),
            ("model nn.Linear(2, 2)", False),
        ]
    if kinds & {
        "object:NoiseSchedule",
        "object:ShapesWorld",
        "object:Precision",
        "generator",
    }:
        labels += [("int 42", True), ("object()", True), ("torch.float32", True)]
    if "device" in kinds:
        labels += [("str 'nonsense'", True), ("int 42", True)]
    if "path" in kinds:
        labels += [("str ''", True), ("int 42", True), ("path /dev/null/x", False)]
    if "seq_int" in kinds:
        labels += [("str 'ab'", True), ("seq []", False), ("seq [0]", False)]
        labels += [("seq [-1]", True), ("seq [1.5]", True), ("seq [10**9]", False)]
        if "int" not in kinds:
            labels.append(("int 3", True))
    if "seq_str" in kinds:
        labels += [
            ("str 'circle'", True),
            ("seq []", False),
            ("seq ['nonsense']", True),
        ]
        labels.append(("seq [3]", True))
    if "callable" in kinds:
        labels += [("int 42", True)]
    if "dict" in kinds:
        labels += [("int 42", True), ("dict {}", False)]
    seen, unique = set(), []
    for label, invalid in labels:
        if label not in seen:
            seen.add(label)
            unique.append((label, invalid))
    return unique


def bad_value(label: str, valid, ctx):
    simple = {
        "str 'x'": "x", "None": None, "list [1]": [1], "bool True": True, "float 3.5": 3.5,
        "int 0": 0, "int -1": -1, "int 10**9": 10**9, "float nan": math.nan,
        "float inf": math.inf, "float -inf": -math.inf, "float -1.0": -1.0, "float 0.0": 0.0,
        "float 1e9": 1e9, "str 'no'": "no", "int 1": 1, "int 3": 3, "str 'nonsense'": "nonsense",
        "str ''": "", "list [[1.0]]": [[1.0]], "int 42": 42, "str 'ab'": "ab", "seq []": [],
        "seq [0]": [0], "seq [-1]": [-1], "seq [1.5]": [1.5], "seq [10**9]": [10**9],
        "str 'circle'": "circle", "seq ['nonsense']": ["nonsense"], "seq [3]": [3],
        "dict {}": {}, "torch.float32": torch.float32, "path /dev/null/x": "/dev/null/x/file.pt",
    }  # fmt: skip
    if label in simple:
        return simple[label]
    if label == "object()":
        return object()
    if label == "model class":
        return (
            type(valid) if isinstance(valid, torch.nn.Module) else torch.nn.Linear
        )
    if label == "model nn.Linear(2, 2)":
        return torch.nn.Linear(2, 2)
    if not isinstance(valid, torch.Tensor):
        valid = torch.rand(2, 3, 8, 8)
    if label == "tensor empty":
        return valid[:0] if valid.dim() else torch.empty(0)
    if label == "tensor wrong shape":
        return (
            valid.flatten()
            if valid.dim() != 1
            else valid[None].expand(2, -1).clone()
        )
    if label == "tensor wrong dtype":
        return valid.long() if valid.is_floating_point() else valid.float() + 0.5
    if label == "tensor huge":
        return valid * 1e9 + 1e9 if valid.is_floating_point() else valid + 10**9
    if label == "tensor nan":
        bad = (
            valid.clone().float()
            if not valid.is_floating_point()
            else valid.clone()
        )
        bad.view(-1)[:1] = math.nan
        return bad
    raise KeyError(label)


# ---------------------------------------------------------------------------------------------
# Valid values (worker process)
# ---------------------------------------------------------------------------------------------


class Context:
    """Valid example values, built lazily from the package under test and cached."""

    def __init__(self, objects: dict, modules: dict, workdir: Path):
        self.objects, self.modules, self.workdir = objects, modules, workdir
        self.by_name = {}
        for key, obj in objects.items():
            self.by_name.setdefault(key.rsplit(".", 1)[-1], obj)
        for module in modules.values():  # private-but-needed names, e.g. UPSAMPLERS
            for name, obj in vars(module).items():
                self.by_name.setdefault(name, obj)
        self.cache: dict = {}

    def get(self, name: str):
        return self.by_name[name]

    def once(self, key: str, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def build(self, cls_name: str, **kwargs):
        """cls_name(**kwargs), dropping the keywords its signature lacks (layouts differ)."""
        cls = self.get(cls_name)
        params = inspect.signature(cls).parameters
        return cls(**{k: v for k, v in kwargs.items() if k in params})

    # the shared example objects ------------------------------------------------------------
    def world(self):
        return self.once("world", lambda: self.get("ShapesWorld")())

    def schedule(self):
        return self.get("NoiseSchedule").linear(10)

    def precision(self):
        return self.once("precision", lambda: self.get("choose_precision")("cpu"))

    def unet(self):
        return self.once(
            "unet",
            lambda: self.build(
                "UNet", base_channels=8, channel_mults=(1, 2), attention_levels=(1,),
                image_size=8, class_counts=(5, 6), heads=2,
            ),
        )  # fmt: skip

    def vae(self):
        return self.once(
            "vae",
            lambda: self.build("VAE", latent_dim=4, widths=(8, 16), image_size=8),
        )

    def autoencoder(self):
        return self.once(
            "ae",
            lambda: self.build(
                "Autoencoder", latent_dim=4, widths=(8, 16), image_size=8
            ),
        )

    def oracle(self):
        return self.once(
            "oracle", lambda: self.build("Oracle", world=self.world(), width=8)
        )

    def toy(self):
        return self.once(
            "toy",
            lambda: self.build("ToyDenoiser", hidden=16, layers=2, time_dim=8),
        )

    def upsampler(self):
        return self.once(
            "up", lambda: self.get("Upsampler2x")("resize-conv nearest", 4)
        )

    def model_for(self, target: Target):
        module = target.module
        if re.search(r"toy2d", module):
            return self.toy()
        if re.search(r"\.vae$", module):
            return self.vae()
        if re.search(r"\.(ae|autoencoder)$", module):
            return self.autoencoder()
        if re.search(
            r"diffusion|unet|sampling|objectives|guidance|harness", module
        ):
            return self.unet()
        if re.search(r"upsampl", module):
            return self.upsampler()
        if re.search(r"oracle|metrics", module):
            return self.oracle()
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()
        )


def valid_tables(ctx: Context):
    """name -> factory(target) for required parameters; per-callable entries first."""
    img = lambda *_: torch.rand(2, 3, 8, 8)  # noqa: E731
    vec = lambda *_: torch.randn(2, 4)  # noqa: E731
    labels = lambda: ctx.world().sample_labels(4)  # noqa: E731

    def train_recipe(_):
        model = torch.nn.Linear(2, 1)
        ctx.cache["train_model"] = model
        return model

    def train_loss(_):
        model = ctx.cache.get("train_model") or torch.nn.Linear(2, 1)
        return lambda step: model(torch.ones(4, 2)).square().mean()

    def train_opt(_):
        model = ctx.cache.get("train_model") or torch.nn.Linear(2, 1)
        return torch.optim.SGD(model.parameters(), lr=0.01)

    per_callable = {
        "render": {
            "shape": lambda _: labels().shape, "colour": lambda _: labels().colour,
            "size": lambda _: labels().size, "cell": lambda _: labels().cell,
            "offset": lambda _: labels().offset,
        },
        "caption": {"objects": lambda _: [ctx.get("SceneObject")("circle", "red", "small", 0)]},
        "train": {"model": train_recipe, "loss_fn": train_loss, "optimizer": train_opt,
                  "steps": lambda _: 2, "progress": lambda _: False},
        "load_checkpoint": {"path": lambda _: ctx.checkpoint(), "model": lambda _: ctx.ckpt_model},
        "save_checkpoint": {"path": lambda _: str(ctx.workdir / "ckpt.pt")},
        "layer_shapes": {"inputs": lambda _: [torch.rand(2, 3, 8, 8)]},
        "eval_mode": {"models": lambda t: [ctx.model_for(t)]},
        "EMA": {"model": lambda t: torch.nn.Linear(2, 2)},
        "show": {"obj": lambda _: ctx.get("pick")},
        "pick": {"smoke": lambda _: 1, "cpu": lambda _: 2, "gpu": lambda _: 3},
        "Precision": {"device": lambda _: torch.device("cpu"), "dtype": lambda _: torch.float32},
        "cuda_supports_bf16": {"device": lambda _: torch.device("cpu")},
        "device_description": {"device": lambda _: torch.device("cpu")},
        "load_torchvision": {"name": lambda _: "mnist", "root": lambda _: str(ctx.workdir),
                             "download": lambda _: False},
        "pixel_shuffle": {"x": lambda _: torch.rand(2, 12, 4, 4), "r": lambda _: 2},
        "pixel_unshuffle": {"x": lambda _: torch.rand(2, 3, 8, 8), "r": lambda _: 2},
        "conv_transpose2d": {"weight": lambda _: torch.randn(3, 4, 3, 3)},
        "conv_transpose2d_scatter": {"weight": lambda _: torch.randn(3, 4, 3, 3)},
        "conv2d_loops": {"weight": lambda _: torch.randn(4, 3, 3, 3)},
        "conv2d": {"weight": lambda _: torch.randn(4, 3, 3, 3)},
        "sliding_windows": {"kernel": lambda _: 3},
        "strided_conv": {"kernel": lambda _: torch.ones(3, 3) / 9},
        "linear_kernel": {"t": lambda _: torch.linspace(-2, 2, 9)},
        "cubic_kernel": {"t": lambda _: torch.linspace(-2, 2, 9)},
        "nearest_kernel": {"t": lambda _: torch.linspace(-2, 2, 9)},
        "output_size": {"in_size": lambda _: 8, "scale": lambda _: 2.0},
        "draw_weights": {"ax": lambda _: plt.subplots()[1], "in_size": lambda _: 4,
                         "out_size": lambda _: 8},
        "conv_frame": {"ax": lambda _: plt.subplots()[1]},
        "plot_history": {"history": lambda _: ctx.history()},
        "image_grid": {"images": img},
        "to_numpy_image": {"image": lambda _: torch.rand(3, 8, 8)},
        "receptive_field": {"layers": lambda _: [ctx.get("Layer")(3), ctx.get("Layer")(3, 2)]},
        "fan_in": {"layers": lambda _: [ctx.get("Layer")(3)], "input_size": lambda _: 8,
                   "unit": lambda _: 0},
        "receptive_field_figure": {"layers": lambda _: [ctx.get("Layer")(3)],
                                   "input_size": lambda _: 8},
        "ReceptiveField": {"size": lambda _: 3, "jump": lambda _: 1, "start": lambda _: 0.5},
        "per_axis": {"name": lambda _: "k", "value": lambda _: 3},
        "inputs_with_same_output": {"o": lambda _: 3},
        "sdf_circle": {"x": lambda _: torch.randn(1, 1, 8), "y": lambda _: torch.randn(1, 8, 1),
                       "half": lambda _: torch.ones(1, 1, 1)},
        "coverage": {"sdf": lambda _: torch.randn(8, 8)},
        "cell_names": {"grid": lambda _: 3},
        "min_resolution": {"grid": lambda _: 3},
        "gaussian_stats": {"features": lambda _: torch.randn(10, 4)},
        "frechet_distance": {"mean1": lambda _: torch.zeros(4), "mean2": lambda _: torch.ones(4),
                             "cov1": lambda _: torch.eye(4), "cov2": lambda _: torch.eye(4)},
        "frechet_distance_of": {"features_a": lambda _: torch.randn(10, 4),
                                "features_b": lambda _: torch.randn(10, 4)},
        "oracle_features": {"images": lambda _: torch.rand(4, 3, 32, 32)},
        "frechet_oracle_distance": {"images_a": lambda _: torch.rand(4, 3, 32, 32),
                                    "images_b": lambda _: torch.rand(4, 3, 32, 32)},
        "total_variation": {"p": lambda _: torch.full((4,), 0.25), "q": lambda _: torch.full((4,), 0.25)},
        "oracle_loss": {"logits": lambda _: ctx.oracle_logits(), "targets": lambda _: ctx.oracle_targets()},
        "accuracy": {"predicted": lambda _: ctx.oracle_parsed(), "targets": lambda _: ctx.oracle_targets(),
                     "n_shapes": lambda _: 5},
        "evaluate": {"scenes": lambda _: ctx.world().scenes(4)},
        "GaussianMixture2d": {"means": lambda _: torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
                              "std": lambda _: 0.1, "weights": lambda _: torch.tensor([0.5, 0.5])},
        "eps_error": {"mixture": lambda _: ctx.mixture(), "timesteps": lambda _: [1, 5], "n": lambda _: 16},
        "train_diffusion": {"batches": lambda _: lambda step: (torch.rand(2, 3, 8, 8) * 2 - 1, None)},
        "ddim_step": {"t": lambda _: 5, "t_prev": lambda _: 2, "eta": lambda _: 0.0},
        "ddim_sigma": {"t": lambda _: 5, "t_prev": lambda _: 2, "eta": lambda _: 0.5},
        "ddim_timesteps": {"total": lambda _: 10, "steps": lambda _: 3},
        "ddim_sample": {"shape": lambda _: (2, 3, 8, 8), "steps": lambda _: 2},
        "ddpm_sample": {"shape": lambda _: (2, 3, 8, 8)},
        "ddim_invert": {"steps": lambda _: 2},
        "to_eps_and_x0": {"objective": lambda _: "eps"},
        "target": {"objective": lambda _: "eps"},
        "loss_weights": {"objective": lambda _: "eps"},
        "gaussian_log_likelihood": {"log_sigma": lambda _: -1.0},
        "bits_per_dim": {"nats": lambda _: 100.0, "dims": lambda _: 192},
        "toy_objective": {"target": lambda _: torch.randn(4)},
        "toy_gradient": {"mu": lambda _: torch.randn(4), "log_sigma": lambda _: torch.zeros(4),
                         "target": lambda _: torch.randn(4)},
        "reparam_gradient": {"f": lambda _: lambda z: z.square().sum(-1), "mu": lambda _: torch.randn(4),
                             "log_sigma": lambda _: torch.zeros(4), "n_samples": lambda _: 8},
        "score_function_gradient": {"f": lambda _: lambda z: z.square().sum(-1),
                                    "mu": lambda _: torch.randn(4),
                                    "log_sigma": lambda _: torch.zeros(4), "n_samples": lambda _: 8},
        "gradient_variance": {"estimator": lambda _: ctx.get("reparam_gradient"),
                              "f": lambda _: lambda z: z.square().sum(-1), "mu": lambda _: torch.randn(4),
                              "log_sigma": lambda _: torch.zeros(4), "n_samples": lambda _: 8,
                              "repeats": lambda _: 2},
        "active_units": {"mu": lambda _: torch.randn(10, 4)},
        "interpolate": {"x": img, "size": lambda _: 4, "x_a": lambda _: torch.rand(3, 8, 8),
                        "x_b": lambda _: torch.rand(3, 8, 8), "steps": lambda _: 3},
        "interpolate_latents": {"a": lambda _: torch.rand(3, 8, 8), "b": lambda _: torch.rand(3, 8, 8),
                                "steps": lambda _: 3},
        "linear_probe": {"train_x": lambda _: torch.randn(20, 4),
                         "train_y": lambda _: torch.randint(0, 3, (20,)),
                         "test_x": lambda _: torch.randn(20, 4),
                         "test_y": lambda _: torch.randint(0, 3, (20,)), "classes": lambda _: 3},
        "train_vae": {"data": lambda _: torch.rand(8, 3, 32, 32)},
        "Upsampler2x": {"name": lambda _: "resize-conv nearest"},
        "make_upsampler": {"name": lambda _: "resize-conv nearest"},
        "artifact_scores": {"name": lambda _: "resize-conv nearest", "seeds": lambda _: (0,)},
        "artifact_scores_of": {"module": lambda _: ctx.get("make_upsampler")("pixel shuffle", 4),
                               "channels": lambda _: 4},
        "train_upsampler": {"name": lambda _: "resize-conv nearest"},
        "evaluate_upsampler": {"images": lambda _: torch.rand(4, 3, 32, 32)},
        "restore": {"images": lambda _: torch.rand(4, 3, 32, 32)},
        "timestep_embedding": {"t": lambda _: torch.tensor([1, 5]), "dim": lambda _: 8},
        "zero_init": {"module": lambda _: torch.nn.Linear(2, 2)},
        "NoiseSchedule": {"betas": lambda _: torch.linspace(1e-4, 0.02, 10)},
        "Source": {"code": lambda _: "x = 1\n"},
        # methods
        "NoiseSchedule.linear": {"steps": lambda _: 10},
        "NoiseSchedule.cosine": {"steps": lambda _: 10},
        "NoiseSchedule.sigmoid": {"steps": lambda _: 10},
        "NoiseSchedule.named": {"name": lambda _: "linear", "steps": lambda _: 10},
        "NoiseSchedule.at": {"values": lambda _: ctx.schedule().alpha_bar,
                             "t": lambda _: torch.tensor([1, 5]), "like": img},
        "ShapesWorld.scenes": {"indices": lambda _: 4},
        "ShapesWorld.sample_labels": {"indices": lambda _: 4},
        "ShapesWorld.captions": {"labels": lambda _: labels()},
        "Scenes.to": {"device": lambda _: "cpu"},
        "UNet.forward": {"x": img, "t": lambda _: torch.tensor([1, 5])},
        "UNet.null_cond": {"batch": lambda _: 2},
        "UNet.embed": {"t": lambda _: torch.tensor([1, 5]), "cond": lambda _: None},
        "VAE.forward": {"x": img}, "VAE.encode": {"x": img}, "VAE.decode": {"z": vec},
        "Autoencoder.forward": {"x": img}, "Autoencoder.encode": {"x": img},
        "Autoencoder.decode": {"z": vec},
        "Oracle.forward": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "Oracle.cell_features": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "Oracle.parse": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "ToyDenoiser.forward": {"x": lambda _: torch.randn(4, 2), "t": lambda _: torch.tensor([1, 2, 3, 4])},
        "GaussianMixture2d.sample": {"n": lambda _: 8},
        "GaussianMixture2d.noisy_score": {"x": lambda _: torch.randn(4, 2), "alpha_bar": lambda _: 0.5},
        "GaussianMixture2d.score": {"x": lambda _: torch.randn(4, 2)},
        "GaussianMixture2d.noisy_eps": {"x": lambda _: torch.randn(4, 2), "alpha_bar": lambda _: 0.5},
        "GaussianMixture2d.log_density": {"x": lambda _: torch.randn(4, 2)},
        "GaussianMixture2d.log_prob": {"x": lambda _: torch.randn(4, 2)},
        "GaussianMixture2d.true_eps": {"x_t": lambda _: torch.randn(4, 2), "alpha_bar": lambda _: 0.5},
        "GaussianMixture2d.ring": {},
        "check_timesteps": {"t": lambda _: torch.tensor([1, 5]), "total": lambda _: 10},
        "predict_eps_and_x0": {"options": lambda _: ctx.get("SamplerOptions")()},
        "History.smoothed": {"window": lambda _: 2},
        "EMA.update": {"model": lambda _: ctx.instance_of("EMA").model
                       if hasattr(ctx.instance_of("EMA"), "model") else torch.nn.Linear(2, 2)},
        "EMA.copy_to": {"model": lambda _: torch.nn.Linear(2, 2)},
        "EMA.load_state_dict": {"state": lambda _: ctx.instance_of("EMA").state_dict()},
        "History.log": {"step": lambda _: 1, "loss": lambda _: 0.5},
        "ConvEncoder.forward": {"x": lambda _: torch.rand(2, 3, 32, 32)},
        "ConvDecoder.forward": {"z": lambda _: torch.randn(2, 64)},
        "ConvDecoder.check_inputs": {"z": lambda _: torch.randn(2, 64)},
        "SelfAttention2d.forward": {"x": lambda _: torch.randn(2, 8, 4, 4)},
        "SelfAttention2d": {"channels": lambda _: 8},
        "ResidualBlock": {"c_in": lambda _: 8, "c_out": lambda _: 8, "emb_dim": lambda _: 16},
        "ResidualBlock.forward": {"x": lambda _: torch.randn(2, 8, 4, 4), "emb": lambda _: torch.randn(2, 16)},
        "ConvEncoder": {"image_size": lambda _: 32}, "ConvDecoder": {"image_size": lambda _: 32},
        "TransposedConvUp.forward": {"x": lambda _: torch.randn(2, 4, 4, 4)},
        "ResizeConvUp.forward": {"x": lambda _: torch.randn(2, 4, 4, 4)},
        "PixelShuffleUp.forward": {"x": lambda _: torch.randn(2, 4, 4, 4)},
        "Upsampler2x.forward": {"x": lambda _: torch.rand(2, 3, 8, 8)},
        "ConvExplorer.update": {}, "Layer": {"kernel": lambda _: 3},
        # the reorganised layout's additions (absent from older layouts: harmless there)
        "as_device": {"device": lambda _: "cpu"},
        "History.record": {"step": lambda _: 1, "loss": lambda _: 0.5, "metrics": lambda _: {}},
        "check_training_arguments": {
            "steps": lambda _: 1, "lr": lambda _: 0.01, "seed": lambda _: 0,
            "precision": lambda _: None, "progress": lambda _: False,
            "checkpoint": lambda _: None, "checkpoint_every": lambda _: None,
        },
        "judge_size": {"expected": lambda _: 3, "got": lambda _: 3},
        "judge_tensor": {"expected": lambda _: torch.ones(3), "got": lambda _: torch.ones(3)},
        "judge_weights": {"expected": lambda _: torch.eye(3), "got": lambda _: torch.eye(3)},
        "judge_close": {"expected": lambda _: torch.ones(3), "got": lambda _: torch.ones(3)},
        "judge_sample_and_gradients": {"expected": lambda _: (torch.ones(3),) * 3,
                                       "got": lambda _: (torch.ones(3),) * 3},
        "seeded": {"draw": lambda _: lambda: torch.zeros(1), "seed": lambda _: 0},
        "Oracle.read": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "Oracle.describe": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "parse": {"images": lambda _: torch.rand(2, 3, 32, 32)},
        "first_object": {"cells": lambda _: ctx.oracle_parsed()},
        "attribute_frequencies": {"cells": lambda _: ctx.oracle_parsed()},
        "attention": {"q": lambda _: torch.randn(2, 2, 5, 4), "k": lambda _: torch.randn(2, 2, 5, 4),
                      "v": lambda _: torch.randn(2, 2, 5, 4)},
        "padding_mask": {"valid": lambda _: torch.tensor([3, 5])},
        "causal_mask": {"length": lambda _: 5},
        "combine_masks": {"masks": lambda _: [torch.ones(5, 5, dtype=torch.bool)]},
        "MultiHeadAttention": {"dim": lambda _: 8, "heads": lambda _: 2},
        "MultiHeadAttention.forward": {"x": lambda _: torch.randn(2, 5, 8)},
        "TransformerBlock": {"dim": lambda _: 8, "heads": lambda _: 2},
        "TransformerBlock.forward": {"x": lambda _: torch.randn(2, 5, 8)},
        "CrossAttention2d": {"channels": lambda _: 8, "context_dim": lambda _: 6, "heads": lambda _: 2},
        "CrossAttention2d.forward": {"x": lambda _: torch.randn(2, 8, 4, 4),
                                     "context": lambda _: torch.randn(2, 5, 6)},
        "LearnedPositions": {"max_length": lambda _: 10, "dim": lambda _: 8},
        "LearnedPositions.forward": {"x": lambda _: torch.randn(2, 5, 8)},
        "TimestepEmbedding": {"dim": lambda _: 8, "emb_dim": lambda _: 16},
        "TimestepEmbedding.forward": {"t": lambda _: torch.tensor([1, 5])},
        "LabelEmbedding": {"class_counts": lambda _: (3, 4), "dim": lambda _: 8},
        "LabelEmbedding.forward": {"labels": lambda _: torch.tensor([[0, 1], [2, 3]]),
                                   "emb": lambda _: torch.randn(2, 8)},
        "LabelEmbedding.null": {"batch": lambda _: 2},
        "EmbeddingProjection": {"cond_dim": lambda _: 6, "dim": lambda _: 8},
        "EmbeddingProjection.forward": {"cond": lambda _: torch.randn(2, 6),
                                        "emb": lambda _: torch.randn(2, 8)},
        "first_object_labels": {"scenes": lambda _: ctx.world().scenes(4)},
        "score_images": {"judge": lambda _: ctx.oracle(), "images": lambda _: torch.rand(4, 3, 32, 32),
                         "reference": lambda _: torch.rand(4, 3, 32, 32)},
        "request_scores": {"judge": lambda _: ctx.oracle(), "images": lambda _: torch.rand(4, 3, 32, 32),
                           "requests": lambda _: torch.tensor([[0, 0], [1, 1], [2, 2], [3, 3]])},
        "sample_images": {"n": lambda _: 2, "steps": lambda _: 2, "batch_size": lambda _: 2},
        "label_requests": {"n": lambda _: 4},
        "EmbeddingProjection.null": {"batch": lambda _: 2},
        "TokenStates": {"states": lambda _: torch.randn(2, 5, 6),
                        "mask": lambda _: torch.ones(2, 5, dtype=torch.bool)},
        "TokenStates.pad_to": {"length": lambda _: 7},
        "cat_conditions": {"conditions": lambda _: [torch.randn(2, 6), torch.randn(3, 6)]},
        "where_condition": {"choose": lambda _: torch.tensor([True, False]),
                            "if_true": lambda _: torch.zeros(2, 6), "if_false": lambda _: torch.ones(2, 6)},
        "sinusoidal_positions": {"length": lambda _: 5, "dim": lambda _: 8},
        "pil_resize": {"x": lambda _: torch.rand(3, 8, 8), "size": lambda _: (4, 4)},
        "explain_pil_difference": {"x": lambda _: torch.rand(3, 8, 8), "size": lambda _: (4, 4)},
        "resize": {"image": lambda _: torch.rand(3, 8, 8), "scale": lambda _: 2.0,
                   "mode": lambda _: "bilinear"},
    }  # fmt: skip
    for name in ("sdf_square", "sdf_diamond", "sdf_triangle", "sdf_cross"):
        per_callable[name] = per_callable["sdf_circle"]
    for name in ("TransposedConvUp", "ResizeConvUp", "PixelShuffleUp"):
        per_callable[name] = {"channels": lambda _: 4}
    by_name = {
        "model": lambda t: ctx.model_for(t), "net": lambda t: ctx.model_for(t),
        "module": lambda t: ctx.model_for(t), "oracle": lambda _: ctx.oracle(),
        "schedule": lambda _: ctx.schedule(), "world": lambda _: ctx.world(),
        "precision": lambda _: ctx.precision(), "generator": lambda _: torch.Generator().manual_seed(0),
        "x": img, "x0": img, "x_t": img, "x_prev": img, "images": img, "image": img, "pred": img,
        "target": img, "prediction": img, "noise": img, "eps": img, "y": img, "mean": img,
        "logits": img, "mu": vec, "logvar": vec, "t": lambda _: torch.tensor([1, 5]),
        "weight": lambda _: torch.randn(4, 3, 3, 3), "latent_dim": lambda _: 4, "steps": lambda _: 1,
        "n": lambda _: 2, "i": lambda _: 5, "k": lambda _: 3, "kernel_size": lambda _: 2,
        "in_size": lambda _: 4, "out_size": lambda _: 8, "mode": lambda _: "bilinear",
        "size": lambda _: 8, "height": lambda _: 8, "width": lambda _: 8, "n_samples": lambda _: 8,
        "channels": lambda _: 4, "c_in": lambda _: 4, "c_out": lambda _: 4, "cutoff": lambda _: 0.25,
        "sigma": lambda _: 1.0, "r": lambda _: 2, "fn": lambda _: lambda *args: None,
        "objects": lambda _: [], "name": lambda _: "linear", "dims": lambda _: 10,
        "batch": lambda _: 2, "z": vec, "objective": lambda _: "eps", "grid": lambda _: 3,
        "device": lambda _: "cpu", "like": img,
    }  # fmt: skip
    return per_callable, by_name


# ---------------------------------------------------------------------------------------------
# Worker: build calls, run them, classify
# ---------------------------------------------------------------------------------------------


class CallTimeout(BaseException):
    """Raised by the alarm; a BaseException so that `except Exception` does not swallow it."""


def _on_alarm(signum, frame):
    raise CallTimeout()


class Worker:
    def __init__(
        self,
        root: Path,
        objects: dict,
        modules: dict,
        targets: list[Target],
        workdir: Path,
    ):
        self.root = (root / "minigen").resolve()
        self.targets = {target.key: target for target in targets}
        self.workdir = workdir
        self.ctx = Context(objects, modules, self.workdir)
        self.ctx.history = self._history
        self.ctx.checkpoint = self._checkpoint
        self.ctx.mixture = self._mixture
        self.ctx.instance_of = self.instance_of
        self.ctx.oracle_logits = lambda: self._oracle_output("logits")
        self.ctx.oracle_parsed = lambda: self._oracle_output("parsed")
        self.ctx.oracle_targets = lambda: self.ctx.world().scenes(2).cell_targets()
        self.per_callable, self.by_name = valid_tables(self.ctx)
        self.instances: dict = {}
        self.baselines: dict = {}

    # helpers for the tables -------------------------------------------------------------
    def _history(self):
        history = self.ctx.get("History")()
        for step in range(3):
            if hasattr(history, "record"):
                history.record(step, 1.0 / (step + 1), {})
            else:
                history.steps.append(step)
                history.losses.append(1.0 / (step + 1))
        return history

    def _checkpoint(self):
        path = self.workdir / "valid.pt"
        self.ctx.ckpt_model = torch.nn.Linear(2, 2)
        self.ctx.get("save_checkpoint")(path, self.ctx.ckpt_model)
        return str(path)

    def _mixture(self):
        cls = self.ctx.get("GaussianMixture2d")
        return cls(
            torch.tensor([[0.0, 0.0], [1.0, 1.0]]), 0.1, torch.tensor([0.5, 0.5])
        )

    def _oracle_output(self, what: str):
        oracle = self.ctx.oracle()
        images = self.ctx.world().scenes(2).images
        with torch.no_grad():
            if what == "logits":
                return oracle(images)
            if hasattr(oracle, "parse"):  # a method before the reorganisation
                return oracle.parse(images)
            return self.ctx.get("parse")(oracle, images)

    def instance_of(self, short: str):
        for key, target in self.targets.items():
            if target.kind == "class" and target.name == short:
                return self.instance(key)
        return None

    def instance(self, class_key: str):
        """A valid instance: models are built once (methods rarely change them), other
        objects afresh for every call, so that one call's damage does not leak."""
        if class_key in self.instances:
            return self.instances[class_key]
        cls = self.ctx.objects[class_key]
        models = {"UNet": self.ctx.unet, "VAE": self.ctx.vae, "Oracle": self.ctx.oracle,
                  "Autoencoder": self.ctx.autoencoder, "ToyDenoiser": self.ctx.toy}  # fmt: skip
        special = {
            "Scenes": lambda: self.ctx.world().scenes(4),
            "SceneLabels": lambda: self.ctx.world().sample_labels(4),
            "History": self._history,
            "Precision": self.ctx.precision,
            "GaussianMixture2d": self._mixture,
            "NoiseSchedule": self.ctx.schedule,
            **models,
        }
        if cls.__name__ in special:
            instance = special[cls.__name__]()
        else:
            args, kwargs = self.valid_call(self.targets[class_key])
            instance = cls(*args, **kwargs)
        if isinstance(instance, torch.nn.Module):
            self.instances[class_key] = instance
        return instance

    # calls ---------------------------------------------------------------------------------
    def function_of(self, target: Target):
        if target.kind in ("function", "class"):
            return self.ctx.objects[target.key]
        cls = self.ctx.objects[target.owner]
        attr = target.key.rsplit(".", 1)[-1]
        if target.kind == "classmethod":
            return getattr(cls, attr)
        instance = self.instance(target.owner)
        return instance if target.kind == "forward" else getattr(instance, attr)

    def signature(self, target: Target) -> inspect.Signature:
        if target.kind == "forward":
            return inspect.signature(self.function_of(target).forward)
        return inspect.signature(self.function_of(target))

    def valid_value(self, target: Target, param: inspect.Parameter):
        table = self.per_callable.get(target.name, {})
        short = target.name.split(".")[-1]
        if param.name in table:
            return table[param.name](target)
        if param.default is not inspect.Parameter.empty:
            return param.default
        if short.startswith("train") and param.name == "steps":
            return 1
        if param.name in self.by_name:
            return self.by_name[param.name](target)
        kinds, optional = kinds_of(param.annotation)
        if optional:
            return None
        fallback = {"int": 2, "float": 0.5, "bool": False, "model": None}
        for kind in ("int", "float", "bool"):
            if kind in kinds:
                return fallback[kind]
        if "model" in kinds:
            return self.ctx.model_for(target)
        if "object:ShapesWorld" in kinds:
            return self.ctx.world()
        raise LookupError(
            f"no valid example for parameter {param.name!r} ({param.annotation})"
        )

    def valid_call(self, target: Target, bad: tuple[str, object] | None = None):
        """Positional args (up to a *args) and keywords; `bad` = (param, value) replaces one."""
        args, kwargs = [], {}
        params = list(self.signature(target).parameters.values())
        has_var = any(p.kind is p.VAR_POSITIONAL for p in params)
        for param in params:
            if param.kind is param.VAR_KEYWORD:
                continue
            if bad is not None and bad[0] == param.name:
                value = bad[1]
            elif param.kind is param.VAR_POSITIONAL:
                table = self.per_callable.get(target.name, {})
                value = table[param.name](target) if param.name in table else []
            elif (
                param.default is not inspect.Parameter.empty
                and param.name not in self.per_callable.get(target.name, {})
            ):
                continue  # leave defaults to the callable (dataclass factories included)
            else:
                value = self.valid_value(target, param)
            if param.kind is param.VAR_POSITIONAL:
                args.extend(
                    value if (bad is None or bad[0] != param.name) else [value]
                )
            elif has_var and param.kind is not param.KEYWORD_ONLY:
                args.append(value)
            elif param.kind is param.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[param.name] = value
        if target.name.split(".")[-1].startswith("train"):
            names = {p.name for p in params}
            for name, value in (("progress", False), ("batch_size", 4)):
                if name in names and (bad is None or bad[0] != name):
                    kwargs.setdefault(name, value)
        return args, kwargs

    def call(
        self,
        target: Target,
        bad: tuple[str, object] | None,
        seconds: float = CALL_SECONDS,
    ):
        function = self.function_of(target)
        args, kwargs = self.valid_call(target, bad)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            result = function(*args, **kwargs)
            if hasattr(result, "__enter__") and not isinstance(result, type):
                with result:  # a context manager (eval_mode): enter and leave it
                    pass
            return result
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            plt.close("all")

    def classify(
        self, error: BaseException, baseline_error: str | None
    ) -> tuple[str, str]:
        """("clear" | "raw" | "returned", where) for an exception."""
        if isinstance(error, CallTimeout):
            return "timeout", ""
        if baseline_error is not None and same_failure(
            describe_error(error), baseline_error
        ):
            # the bad value got through to the valid call's failure
            return ("returned", "")
        frame = innermost(error)
        where = f"{shorten(frame[0])}:{frame[1]}" if frame else "?"
        in_minigen = bool(frame) and Path(frame[0]).resolve().is_relative_to(
            self.root
        )
        defined_here = (type(error).__module__ or "").startswith("minigen")
        raised_here = in_minigen and linecache.getline(
            frame[0], frame[1]
        ).strip().startswith("raise")
        if defined_here or (
            raised_here and isinstance(error, (TypeError, ValueError))
        ):
            return "clear", where
        if (
            isinstance(error, OSError)
            and error.filename
            and str(error.filename) in str(error)
        ):
            return "clear", where
        return "raw", where

    def run(self, plan: list, start: int, out) -> None:
        for index in range(start, len(plan)):
            key, param, label, invalid = plan[index]
            target = self.targets.get(key)
            record = {"i": index}
            try:
                if param is None:
                    record.update(self.baseline(target))
                else:
                    record.update(self.fuzz(target, param, label))
            except CallTimeout:
                record.update(outcome="timeout")
            except (
                BaseException
            ) as error:  # the harness itself failed: report, go on
                record.update(outcome="skip", error=describe_error(error))
            out.write(json.dumps(record) + "\n")
            out.flush()

    def baseline(self, target: Target) -> dict:
        try:
            self.call(target, None, BASELINE_SECONDS)
            self.baselines[target.key] = None
            return {"outcome": "ok"}
        except CallTimeout:
            self.baselines[target.key] = "timeout"
            return {"outcome": "baseline-timeout"}
        except BaseException as error:
            text = describe_error(error)
            expected = target.name in EXPECTED_BASELINE_ERRORS
            self.baselines[target.key] = text if expected else "failed"
            return {
                "outcome": "ok-expected-error" if expected else "baseline-failed",
                "error": text,
            }

    def fuzz(self, target: Target, param: str, label: str) -> dict:
        if target.key not in self.baselines:
            self.baseline(target)
        baseline = self.baselines[target.key]
        if baseline in ("failed", "timeout"):
            return {"outcome": "skip"}
        params = self.signature(target).parameters
        valid = None
        if (
            param in params
            and params[param].kind is not params[param].VAR_POSITIONAL
        ):
            try:
                valid = self.valid_value(target, params[param])
            except LookupError:
                valid = None
        value = bad_value(label, valid, self.ctx)
        try:
            result = self.call(target, (param, value))
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):
                raise
            outcome, where = self.classify(error, baseline)
            return {
                "outcome": outcome,
                "where": where,
                "error": describe_error(error),
            }
        return {"outcome": "returned", "nan": returns_nan(result)}


# callables whose valid call fails for want of a resource; a bad call that reaches the
# same failure let the bad value through
EXPECTED_BASELINE_ERRORS = {"load_torchvision": "no dataset files offline"}
# what each environment variable holds: a "choice" among names ("" means unset, as
# documented and tested) or a "path" (any text but blank); for others every value
# tried counts as invalid
ENV_KINDS = {
    "MINIGEN_PROFILE": "choice",
    "MINIGEN_PROGRESS": "choice",
    "MINIGEN_CACHE": "path",
}


def same_failure(a: str, b: str) -> bool:
    """One failure: the same exception type and message up to its first colon."""
    return a.split(":")[:2] == b.split(":")[:2]


def describe_error(error: BaseException) -> str:
    text = str(error).replace("\n", " ")
    return f"{type(error).__name__}: {text[:160]}"


def innermost(error: BaseException):
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename, tb.tb_lineno


def shorten(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("minigen", "torch", "numpy", "matplotlib", "einops"):
        if anchor in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor) :])
    return Path(filename).name


def returns_nan(result) -> bool:
    values = result if isinstance(result, (tuple, list)) else (result,)
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if value.numel() and not torch.isfinite(value).all():
                return True
        if isinstance(value, float) and not math.isfinite(value):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Plan and driver
# ---------------------------------------------------------------------------------------------


def make_plan(targets: list[Target], objects: dict) -> list[tuple]:
    """(target key, param or None for the baseline, bad label, invalid?) for every call."""
    plan = []
    for target in targets:
        plan.append((target.key, None, None, False))
        obj = objects[target.owner] if target.owner else objects[target.key]
        attr = target.key.rsplit(".", 1)[-1]
        function = getattr(obj, attr) if target.owner else obj
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):
            continue
        params = list(signature.parameters.values())
        if target.kind in ("method", "forward"):
            params = params[1:]  # self
        for param in params:
            if param.kind is param.VAR_KEYWORD:
                continue
            kinds, optional = kinds_of(param.annotation)
            if param.kind is param.VAR_POSITIONAL:
                kinds, optional = {k for k in kinds if k != "any"} or kinds, False
            for label, invalid in bad_labels(target, param.name, kinds, optional):
                plan.append((target.key, param.name, label, invalid))
    return plan


def env_plan(targets: list[Target], modules: dict) -> list[tuple]:
    """Calls of the public callables of each module that reads a MINIGEN_* variable."""
    plan = []
    for module_name, module in modules.items():
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            continue
        for variable in sorted(set(re.findall(r"MINIGEN_[A-Z_]+", source))):
            constants = [
                n
                for n, v in vars(module).items()
                if v == variable and isinstance(v, str)
            ]
            names = [variable, *constants]
            readers = [n for n, f in vars(module).items() if inspect.isfunction(f)
                       and f.__module__ == module_name and any(x in inspect.getsource(f) for x in names)]  # fmt: skip
            for target in targets:
                if target.module != module_name or target.kind != "function":
                    continue
                body = inspect.getsource(vars(module)[target.name])
                if any(
                    re.search(rf"\b{re.escape(n)}\b", body) for n in readers + names
                ):
                    kind = ENV_KINDS.get(variable)
                    for value in ("", "   ", "nonsense"):
                        blank = not value.strip()
                        invalid = {"choice": not blank, "path": blank}.get(
                            kind, True
                        )
                        plan.append((target.key, f"${variable}", value, invalid))
    return plan


def run_env_calls(worker: Worker, plan: list, start: int, out) -> None:
    for index in range(start, len(plan)):
        key, variable, value, _ = plan[index]
        target = worker.targets[key]
        name = variable[1:]
        saved = os.environ.get(name)
        os.environ[name] = value
        record = {"i": index}
        try:
            result = worker.call(target, None, BASELINE_SECONDS)
            record.update(outcome="returned", nan=returns_nan(result))
        except BaseException as error:
            outcome, where = worker.classify(error, None)
            record.update(outcome=outcome, where=where, error=describe_error(error))
        finally:
            if saved is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = saved
        out.write(json.dumps(record) + "\n")
        out.flush()


def child_main(
    worker: Worker, plan: list, start: int, write_fd: int, env: bool
) -> None:
    import resource

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _on_alarm)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf(
        "SC_PAGE_SIZE"
    )
    resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_LIMIT, hard))
    os.chdir(worker.workdir)
    with os.fdopen(write_fd, "w") as out:
        (run_env_calls if env else Worker.run)(worker, plan, start, out)
    os._exit(0)


def run_plan(worker: Worker, plan: list, env: bool = False) -> list[dict]:
    """Run the plan in forked workers; a worker that hangs or dies costs one call."""
    results: list[dict | None] = [None] * len(plan)
    start = 0
    while start < len(plan):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            child_main(worker, plan, start, write_fd, env)
        os.close(write_fd)
        buffer, last = b"", time.monotonic()
        with os.fdopen(read_fd, "rb", buffering=0) as stream:
            while True:
                ready, _, _ = select.select([stream], [], [], 1.0)
                if ready:
                    chunk = stream.read(65536)
                    if not chunk:
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        record = json.loads(line)
                        results[record["i"]] = record
                        start = record["i"] + 1
                    last = time.monotonic()
                elif time.monotonic() - last > HARD_SECONDS:
                    os.kill(pid, signal.SIGKILL)
                    break
        _, status = os.waitpid(pid, 0)
        if start < len(plan) and results[start] is None:
            cause = (
                "hung"
                if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
                else "crashed"
            )
            results[start] = {
                "i": start,
                "outcome": "timeout",
                "error": f"worker {cause}",
            }
            start += 1
    return results  # type: ignore[return-value]


def summarise(
    plan: list, results: list[dict], targets: list[Target], top: int, title: str
) -> None:
    by_key = {target.key: target for target in targets}
    counts = Counter()
    silent, raw_groups, silent_groups, baseline_failures = (
        Counter(),
        defaultdict(list),
        defaultdict(list),
        [],
    )
    fuzzed = set()
    # a tensor parameter whose huge values get a clear ValueError is range-checked: NaN
    # must not pass that check either ("NaN passes range checks")
    range_checked = {
        (key, param)
        for (key, param, label, _), record in zip(plan, results)
        if label == "tensor huge" and record["outcome"] == "clear"
        and record.get("error", "").startswith("ValueError")
    }  # fmt: skip
    for (key, param, label, invalid), record in zip(plan, results):
        invalid = invalid or (
            label == "tensor nan" and (key, param) in range_checked
        )
        outcome = record["outcome"]
        if param is None:
            if outcome in ("baseline-failed", "baseline-timeout"):
                baseline_failures.append(
                    f"{by_key[key].name}: {record.get('error', outcome)}"
                )
            continue
        if outcome == "skip":
            counts["skipped"] += 1
            continue
        fuzzed.add(key)
        counts["calls"] += 1
        counts[outcome] += 1
        name = by_key[key].name if key in by_key else key
        if outcome == "raw":
            raw_groups[(name, param)].append(
                f"{label}: {record['error']} [{record['where']}]"
            )
        if outcome == "returned" and invalid:
            silent[outcome] += 1
            silent_groups[(name, param)].append(
                label + (" -> NaN/inf output" if record.get("nan") else "")
            )
    print(f"\n=== {title} ===")
    print(f"callables fuzzed   {len(fuzzed)} (of {len(targets)} found)")
    print(f"calls              {counts['calls']}")
    print(f"clear errors       {counts['clear']}")
    print(f"raw errors         {counts['raw']}")
    print(
        f"returned           {counts['returned']} (silent accepts of invalid values: {silent['returned']})"
    )
    print(f"timeouts           {counts['timeout']}")
    if baseline_failures:
        print(f"baseline failed    {len(baseline_failures)} (not fuzzed):")
        for line in baseline_failures:
            print("   ", line[:150])
    if counts["skipped"]:
        print(
            f"calls skipped      {counts['skipped']} (harness could not build them)"
        )
    groups = sorted(raw_groups.items(), key=lambda item: -len(item[1]))
    print(
        f"\nraw errors by callable + parameter ({len(groups)} groups; top {top}):"
    )
    for (name, param), lines in groups[:top]:
        print(f"  {name}({param}): {len(lines)}")
        for line in sorted(set(lines))[:3]:
            print(f"      {line[:170]}")
    groups = sorted(silent_groups.items(), key=lambda item: -len(item[1]))
    print(
        f"\nsilent accepts by callable + parameter ({len(groups)} groups; top {top}):"
    )
    for (name, param), labels in groups[:top]:
        print(f"  {name}({param}): {', '.join(labels)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--package-root", type=Path, default=Path(__file__).resolve().parents[1]
    )
    parser.add_argument(
        "--top", type=int, default=40, help="groups of raw errors to list"
    )
    parser.add_argument(
        "--only",
        default="",
        help="fuzz only callables whose key contains one of these (comma-separated)",
    )
    parser.add_argument(
        "--json", type=Path, help="write every call and its outcome here"
    )
    args = parser.parse_args()
    # every file the fuzz writes (cache, checkpoints) goes to one folder, removed after
    with tempfile.TemporaryDirectory(prefix="minigen-fuzz-") as scratch:
        fuzz(args, Path(scratch))


def fuzz(args: argparse.Namespace, scratch: Path) -> None:
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    (scratch / "cache").mkdir()
    (scratch / "work").mkdir()
    os.environ["MINIGEN_CACHE"] = str(scratch / "cache")
    os.environ.pop("MINIGEN_PROFILE", None)
    started = time.perf_counter()
    root = args.package_root.resolve()
    _, modules = import_package(root)
    targets, objects, skipped = discover(modules)
    wanted = args.only.split(",")
    targets = [
        target for target in targets if any(part in target.key for part in wanted)
    ]
    plan = make_plan(targets, objects)
    worker = Worker(root, objects, modules, targets, scratch / "work")
    results = run_plan(worker, plan)
    envs = env_plan(targets, modules)
    env_results = run_plan(worker, envs, env=True) if envs else []
    print(f"package: {root} ({len(modules)} modules)")
    print("skipped:", *skipped, sep="\n    ")
    summarise(
        plan + envs,
        results + env_results,
        targets,
        args.top,
        "fuzz of public entry points",
    )
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.json:
        rows = [dict(zip(("key", "param", "label", "invalid"), p), **r)
                for p, r in zip(plan + envs, results + env_results)]  # fmt: skip
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
