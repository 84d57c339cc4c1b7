"""Upsampling by 2: transposed convolution, pixel shuffle, resize-convolution, and their checkerboards.

Implements
- transposed convolution as zero insertion followed by an ordinary convolution, and as a scatter-add,
  after V. Dumoulin, F. Visin, "A guide to convolution arithmetic for deep learning", arXiv:1603.07285
  (2016), with the conventions of torch.nn.functional.conv_transpose2d;
- pixel shuffle, W. Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
  Sub-Pixel Convolutional Neural Network", CVPR 2016, and its ICNR initialisation, A. Aitken et al.,
  "Checkerboard artifact free sub-pixel convolution", arXiv:1707.02937 (2017);
- resize-convolution and the checkerboard artifacts of transposed convolution, A. Odena, V. Dumoulin,
  C. Olah, "Deconvolution and Checkerboard Artifacts", Distill (2016), measured by `checkerboard_score`.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import nn

from minigen.arith import per_axis, transposed_output_size
from minigen.data import ShapesWorld
from minigen.ops import conv2d
from minigen.runtime import Precision, choose_precision, seed_everything
from minigen.train import History, train

IntPair = int | tuple[int, int]

UPSAMPLERS: tuple[str, ...] = (
    "transposed k3s2",
    "transposed k4s2",
    "resize-conv nearest",
    "resize-conv bilinear",
    "pixel shuffle",
)


# ---------------------------------------------------------------------------------------------
# Transposed convolution from scratch
# ---------------------------------------------------------------------------------------------




def _transposed_setup(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: IntPair,
    padding: IntPair,
    output_padding: IntPair,
    dilation: IntPair,
    groups: int,
) -> tuple[tuple[int, int], ...]:
    """Check one transposed convolution; return the (height, width) pairs of s, p, a, d and the output size."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a 4-D tensor (B, C_in, H, W), got {shape}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a 4-D tensor (C_in, C_out / groups, kH, kW), got {shape}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be an int >= 1, got {groups!r}")
    if weight.shape[0] != x.shape[1]:
        raise ValueError(
            f"a transposed convolution's weight is (C_in, C_out / groups, kH, kW): its first axis "
            f"({weight.shape[0]}) must equal x's channels ({x.shape[1]})"
        )
    if x.shape[1] % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({x.shape[1]})")
    if weight.dtype != x.dtype:
        raise TypeError(f"x is {x.dtype} but weight is {weight.dtype}; convert one of them")
    out_channels = weight.shape[1] * groups
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"bias must have shape ({out_channels},), one per output channel, got {tuple(bias.shape)}")
    named = {"stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    s, p, a, d = (per_axis(name, value) for name, value in named.items())
    out_size = tuple(
        transposed_output_size(i, k, s_, p_, d_, a_)  # validates every argument
        for i, k, s_, p_, d_, a_ in zip(x.shape[-2:], weight.shape[-2:], s, p, d, a)
    )
    return s, p, a, d, out_size


def insert_zeros(x: torch.Tensor, stride: IntPair) -> torch.Tensor:
    """Put s - 1 zeros between neighbouring pixels: (B, C, H, W) -> (B, C, (H-1)sH + 1, (W-1)sW + 1)."""
    sh, sw = per_axis("stride", stride)
    if min(sh, sw) < 1:
        raise ValueError(f"stride must be >= 1, got {stride!r}")
    batch, channels, height, width = x.shape
    spread = x.new_zeros(batch, channels, (height - 1) * sh + 1, (width - 1) * sw + 1)
    spread[..., ::sh, ::sw] = x  # x'[s h, s w] = x[h, w], zero elsewhere
    return spread


def conv_transpose2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Transposed convolution, as F.conv_transpose2d: zero insertion, then a stride-1 convolution.

    x: (B, C_in, H, W), weight: (C_in, C_out / groups, kH, kW), bias: (C_out,) -> (B, C_out, oH, oW)
    with o = (i - 1)s - 2p + d(k - 1) + a + 1 (minigen.arith.transposed_output_size).
    The convolution pads the spread input by d(k - 1) - p on each side (a negative amount crops),
    plus output_padding at the bottom and right, and uses the kernel flipped and with in/out swapped.
    """
    (sh, sw), (ph, pw), (ah, aw), (dh, dw), out_size = _transposed_setup(
        x, weight, bias, stride, padding, output_padding, dilation, groups)
    kh, kw = weight.shape[-2:]
    spread = insert_zeros(x, (sh, sw))  # (B, C_in, (H-1)s + 1, (W-1)s + 1)
    top, left = dh * (kh - 1) - ph, dw * (kw - 1) - pw  # p' = d(k - 1) - p
    padded = F.pad(spread, (left, left + aw, top, top + ah))  # F.pad crops where p' < 0
    # W'[o, c, i, j] = W[c, o, k-1-i, k-1-j] within each group: the transpose of the convolution's matrix
    flipped = rearrange(weight, "(g c) o i j -> (g o) c i j", g=groups).flip(-2, -1)
    out = conv2d(padded, flipped, bias, stride=1, padding=0, dilation=(dh, dw), groups=groups)
    assert tuple(out.shape[-2:]) == out_size, (out.shape, out_size)
    return out  # (B, C_out, oH, oW)


def conv_transpose2d_scatter(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
) -> torch.Tensor:
    """Transposed convolution as a scatter-add: each input pixel stamps value * kernel into the output.

    The stamp of pixel (h, w) lands at rows s h + d i, columns s w + d j; overlapping stamps add.
    Padding p then crops p cells from each side. Python loops over the pixels: a teaching version
    for small inputs; conv_transpose2d computes the same thing fast.
    """
    (sh, sw), (ph, pw), _, (dh, dw), (oh, ow) = _transposed_setup(
        x, weight, bias, stride, padding, output_padding, dilation, groups)
    kh, kw = weight.shape[-2:]
    batch, _, height, width = x.shape
    out_channels = weight.shape[1] * groups
    # Before cropping, the canvas spans the stamps of all pixels, plus output_padding (ph + oh + ph cells).
    canvas = x.new_zeros(batch, out_channels, oh + 2 * ph, ow + 2 * pw)
    grouped_x = rearrange(x, "b (g c) h w -> b g c h w", g=groups)
    grouped_weight = rearrange(weight, "(g c) o i j -> g c o i j", g=groups)
    for h in range(height):
        for w in range(width):
            # stamp[o, i, j] = sum_c x[c, h, w] W[c, o, i, j]
            stamp = einsum(grouped_x[..., h, w], grouped_weight, "b g c, g c o i j -> b g o i j")
            rows = slice(h * sh, h * sh + dh * (kh - 1) + 1, dh)
            cols = slice(w * sw, w * sw + dw * (kw - 1) + 1, dw)
            canvas[:, :, rows, cols] += rearrange(stamp, "b g o i j -> b (g o) i j")
    out = canvas[:, :, ph : ph + oh, pw : pw + ow]  # crop p from each side
    if bias is not None:
        out = out + rearrange(bias, "o -> 1 o 1 1")  # + b[o]
    return out  # (B, C_out, oH, oW)


# ---------------------------------------------------------------------------------------------
# Pixel shuffle
# ---------------------------------------------------------------------------------------------


def _check_factor(r: int) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"the upscale factor r must be an int >= 1, got {r!r}")


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """Rearrange channels into space, as F.pixel_shuffle: (B, C r^2, H, W) -> (B, C, H r, W r).

    y[c, h r + i, w r + j] = x[c r^2 + i r + j, h, w].
    """
    _check_factor(r)
    if x.dim() != 4 or x.shape[1] % (r * r):
        raise ValueError(f"pixel_shuffle with r={r} needs (B, C*{r * r}, H, W), got shape {tuple(x.shape)}")
    return rearrange(x, "b (c i j) h w -> b c (h i) (w j)", i=r, j=r)


def pixel_unshuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """The inverse of pixel_shuffle, as F.pixel_unshuffle: (B, C, H r, W r) -> (B, C r^2, H, W)."""
    _check_factor(r)
    if x.dim() != 4 or x.shape[2] % r or x.shape[3] % r:
        raise ValueError(f"pixel_unshuffle with r={r} needs (B, C, H, W) with H and W divisible by {r}, "
                         f"got shape {tuple(x.shape)}")
    return rearrange(x, "b c (h i) (w j) -> b (c i j) h w", i=r, j=r)


# ---------------------------------------------------------------------------------------------
# Upsampler modules: (B, C, H, W) -> (B, C, 2H, 2W)
# ---------------------------------------------------------------------------------------------


def _check_channels(channels: int) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, got {channels!r}")


class TransposedConvUp(nn.Module):
    """Transposed convolution, stride 2: kernel 3 (padding 1, output_padding 1) or 4 (padding 1).

    Kernel 3 is not divisible by the stride, so output pixels receive 1, 2 or 4 stamps: checkerboards.
    """

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        _check_channels(channels)
        if kernel not in (3, 4):
            raise ValueError(f"kernel must be 3 or 4 (the two common x2 layers), got {kernel!r}")
        output_padding = 1 if kernel == 3 else 0  # o = 2(i - 1) - 2 + (k - 1) + a + 1 = 2i
        self.conv = nn.ConvTranspose2d(channels, channels, kernel, stride=2, padding=1, output_padding=output_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, 2H, 2W)


class ResizeConvUp(nn.Module):
    """Resize by 2 (nearest or bilinear), then a 3x3 convolution (Odena et al. 2016)."""

    def __init__(self, channels: int, mode: str = "nearest"):
        super().__init__()
        _check_channels(channels)
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.mode = mode
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = False if self.mode == "bilinear" else None  # align_corners applies to bilinear only
        x = F.interpolate(x, scale_factor=2, mode=self.mode, align_corners=align)  # (B, C, 2H, 2W)
        return self.conv(x)


class PixelShuffleUp(nn.Module):
    """A 3x3 convolution to 4C channels, then pixel_shuffle(2) (Shi et al. 2016).

    icnr: initialise the four sub-pixel kernels of each output channel identically (Aitken et al. 2017),
    so that at initialisation the layer equals a convolution followed by nearest upsampling.
    """

    def __init__(self, channels: int, icnr: bool = False):
        super().__init__()
        _check_channels(channels)
        if not isinstance(icnr, bool):
            raise TypeError(f"icnr must be True or False, got {icnr!r}")
        self.conv = nn.Conv2d(channels, 4 * channels, 3, padding=1)
        if icnr:
            with torch.no_grad():  # channels 4c..4c+3 become output channel c: give them one kernel
                self.conv.weight.copy_(repeat(self.conv.weight[::4], "c i h w -> (c r) i h w", r=4))
                self.conv.bias.copy_(repeat(self.conv.bias[::4], "c -> (c r)", r=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(self.conv(x), 2)  # (B, 4C, H, W) -> (B, C, 2H, 2W)


_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "transposed k3s2": lambda c: TransposedConvUp(c, kernel=3),
    "transposed k4s2": lambda c: TransposedConvUp(c, kernel=4),
    "resize-conv nearest": lambda c: ResizeConvUp(c, mode="nearest"),
    "resize-conv bilinear": lambda c: ResizeConvUp(c, mode="bilinear"),
    "pixel shuffle": lambda c: PixelShuffleUp(c),
}


def make_upsampler(name: str, channels: int) -> nn.Module:
    """A freshly initialised x2 upsampler with `channels` in and out; `name` is one of UPSAMPLERS."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown upsampler {name!r}; valid names: {', '.join(UPSAMPLERS)}")
    return _FACTORIES[name](channels)


# ---------------------------------------------------------------------------------------------
# Checkerboard artifacts as a number
# ---------------------------------------------------------------------------------------------

BORDER = 2  # pixels cropped from each side before scoring: zero padding disturbs the edges

_LOW = torch.tensor([1.0, 2.0, 1.0]) / 4  # h_0: gain 1 at frequency 0, gain 0 at pi
_HIGH = torch.tensor([1.0, -2.0, 1.0]) / 4  # h_pi: gain 1 at pi, gain 0 at 0; zero on any linear ramp
_NYQUIST_FILTERS = torch.stack([
    torch.outer(_HIGH, _LOW),  # (pi, 0): alternates down the rows
    torch.outer(_LOW, _HIGH),  # (0, pi): alternates along the columns
    torch.outer(_HIGH, _HIGH),  # (pi, pi): the checkerboard proper
])  # (3, 3, 3)


def checkerboard_score(y: torch.Tensor) -> torch.Tensor:
    """The fraction of a map's energy in the stride-2 frequencies (pi, 0), (0, pi), (pi, pi): (B, C, H, W) -> (B,).

    After cropping a border of BORDER pixels, each channel is filtered by the three separable 3x3
    filters h_a (x) h_b with h_0 = [1, 2, 1]/4 and h_pi = [1, -2, 1]/4 (a local Fourier analysis:
    each passes one stride-2 frequency with gain 1 and blocks the others and the constant):

        score = sum_{(a,b) != (0,0)} ||(h_a (x) h_b) * y||^2 / ||y||^2   (over the filters' valid region)

    0 for a constant or a linear ramp, 1 for a pure +-1 checkerboard, within [0, 1], and unchanged
    when y is scaled. An all-zero map scores 0.
    """
    if not isinstance(y, torch.Tensor) or y.dim() != 4:
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be a 4-D tensor (B, C, H, W), got {shape}")
    if min(y.shape[-2:]) < 2 * BORDER + 3:
        raise ValueError(f"y must be at least {2 * BORDER + 3} pixels high and wide (a {BORDER}-pixel border "
                         f"is cropped, then a 3x3 filter applied), got {tuple(y.shape[-2:])}")
    dtype = y.dtype if y.is_floating_point() else torch.float32
    y = y[..., BORDER:-BORDER, BORDER:-BORDER].double()  # (B, C, H', W'), float64 so tiny artifacts still count
    maps = rearrange(y, "b c h w -> (b c) 1 h w")
    filters = rearrange(_NYQUIST_FILTERS.to(maps), "f i j -> f 1 i j")
    nyquist = F.conv2d(maps, filters)  # (BC, 3, H'-2, W'-2): the three stride-2 components
    nyquist_energy = _sum_per_image(nyquist.square(), y.shape[0])
    total_energy = _sum_per_image(maps[..., 1:-1, 1:-1].square(), y.shape[0])  # the same valid region
    score = nyquist_energy / total_energy.clamp_min(torch.finfo(torch.float64).tiny)  # 0 / tiny = 0 for y = 0
    return score.to(dtype)


def _sum_per_image(values: torch.Tensor, batch: int) -> torch.Tensor:
    """Sum of (B C, ...) values per image: -> (B,)."""
    return rearrange(values, "(b c) f h w -> b (c f h w)", b=batch).sum(dim=1)


def artifact_scores_of(module: nn.Module, channels: int, size: int = 16, value: float = 1.0) -> dict[str, float]:
    """Checkerboard scores of one module at a constant input (B=1, `channels`, size, size) of `value`.

    "output": the score of the module's output; "gradient": the score of the gradient at the input
    when a constant gradient (all ones) is backpropagated from the output.
    """
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.full((1, channels, size, size), float(value), device=device, requires_grad=True)
    y = module(x)
    (gradient,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y))  # dL/dx with dL/dy = 1
    return {"output": checkerboard_score(y.detach()).item(), "gradient": checkerboard_score(gradient).item()}


def artifact_scores(
    name: str, channels: int = 8, size: int = 16, seeds: tuple[int, ...] = (0, 1, 2)
) -> dict[str, float]:
    """artifact_scores_of a freshly initialised upsampler `name`, averaged over the initialisation seeds."""
    if not seeds:
        raise ValueError("seeds must list at least one seed to average over")
    totals = {"output": 0.0, "gradient": 0.0}
    for seed in seeds:
        torch.manual_seed(seed)
        scores = artifact_scores_of(make_upsampler(name, channels), channels, size)
        totals = {key: totals[key] + scores[key] for key in totals}
    return {key: total / len(seeds) for key, total in totals.items()}


# ---------------------------------------------------------------------------------------------
# A small super-resolution model: 16x16 -> 32x32
# ---------------------------------------------------------------------------------------------


class Upsampler2x(nn.Module):
    """conv 3x3 (3 -> C), ReLU, the x2 upsampler `name`, ReLU, conv 3x3 (C -> 3): (B, 3, H, W) -> (B, 3, 2H, 2W)."""

    def __init__(self, name: str, channels: int = 32):
        super().__init__()
        self.name = name
        self.layers = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(),
            make_upsampler(name, channels),
            nn.ReLU(),
            nn.Conv2d(channels, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def downsample(images: torch.Tensor) -> torch.Tensor:
    """The low-resolution input the models learn to undo: 2x2 average pooling, (B, 3, H, W) -> (B, 3, H/2, W/2)."""
    return F.avg_pool2d(images, 2)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_value: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image: (B, ...) -> (B,). Identical images give inf.

    PSNR = 10 log10(max_value^2 / MSE).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.dim() < 2:
        raise ValueError(f"pred must have a batch axis and at least one more, got shape {tuple(pred.shape)}")
    mse = (pred.float() - target.float()).square().flatten(1).mean(dim=1)  # (B,)
    return 10 * torch.log10(max_value**2 / mse)


def train_upsampler(
    name: str,
    world: ShapesWorld,
    steps: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    channels: int = 32,
    seed: int = 0,
    precision: Precision | None = None,
    progress: bool = True,
) -> tuple[Upsampler2x, History]:
    """Train Upsampler2x(name) to map downsample(image) back to the image (MSE), on fresh renders every step.

    AdamW with a cosine learning-rate decay; split "train" only (evaluate on "val" or "test").
    """
    if world.resolution % 2:
        raise ValueError(f"the world's resolution must be even to halve it, got {world.resolution}")
    precision = precision or choose_precision()
    seed_everything(seed)
    model = Upsampler2x(name, channels).to(precision.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)

    def loss_fn(step: int) -> torch.Tensor:
        images = world.scenes(range(step * batch_size, (step + 1) * batch_size), split="train").images
        images = images.to(precision.device)  # (B, 3, H, W)
        return F.mse_loss(model(downsample(images)).float(), images)

    history = train(model, loss_fn, steps=steps, optimizer=optimizer, scheduler=schedule, precision=precision,
                    progress=progress, desc=name)
    return model.eval(), history


@torch.no_grad()
def evaluate_upsampler(model: nn.Module, world: ShapesWorld, count: int = 256, split: str = "test") -> float:
    """Mean PSNR (dB) of `model` restoring `count` scenes of `split` from their downsampled versions."""
    device = next(model.parameters()).device
    images = world.scenes(count, split=split).images.to(device)  # (N, 3, H, W)
    return psnr(model(downsample(images)).clamp(0, 1), images).mean().item()
