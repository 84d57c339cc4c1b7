"""minigen: the from-scratch PyTorch code of the minigen book on image generation.

The package, one folder per layer of the architecture:

    core/       profiles, runtime (device, precision, seeds, provenance), the
                training loop, validators, show, layer tables
    data/       the shapes world (scenes, labels), captions in English and Chinese
                with hard negatives, the photo, MNIST digits, torchvision
    ops/        chapters 1-2 from scratch: convolution arithmetic, conv and pooling,
                interpolation, aliasing, transposed convolution, pixel shuffle
    tokenizers/ byte-level BPE with CLIP's conventions, trained on the captions
    nn/         building blocks: attention, transformer block, embeddings, norm
                layers, residual blocks, up/down samplers, conv encoder and decoder
    diffusion/  noise schedules, objectives, samplers, training, the 2-D toy
    models/     the chapters' models: oracle, digit classifier, autoencoder, VAE,
                U-Net, upsampler, CLIP
    eval/       metrics (PSNR, Frechet distance, TV), sampling-and-scoring harness,
                oracle scoring of prompts
    pipelines/  the chapters' models chained: unCLIP (chapter 7), the cascade's
                32 -> 64 upsampler, latent diffusion and its first stage
                (chapter 8)
    viz/        grids, figures, widgets (the only place importing matplotlib)
    exercises/  the checking engine and one module of exercises per chapter
    results/    measured results the chapters cite (what benchmarks printed)

Each module names the paper it implements; the book displays the code with
`minigen.show` and runs it. The names below are importable from `minigen` itself,
loaded on first use: `import minigen.diffusion` loads no matplotlib or ipywidgets.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

# The clock that provenance() reports: wall time from `import minigen`.
IMPORTED_AT = time.perf_counter()

_PUBLIC = {  # module -> the public names it defines
    "core.profiles": "PROFILES current_profile pick",
    "core.runtime": (
        "Precision as_device choose_precision cpu_name cpu_supports_bf16 "
        "default_device "
        "eval_mode provenance seed_everything train_mode"
    ),
    "core.show": "show",
    "core.summary": "layer_shapes",
    "core.text": "BOOK_COLUMN ColumnRepr Table dataclass_repr wrap_parts",
    "core.train": (
        "EMA History NonFiniteGradientError NonFiniteLossError "
        "check_training_arguments load_checkpoint save_checkpoint train "
        "warmup_cosine"
    ),
    "data.mnist": "Digits load_mnist",
    "data.photo": "grace_hopper",
    "data.shapes": (
        "COLOURS SHAPES SIZES SPLITS SceneObject Scenes ShapesWorld caption render"
    ),
    "data.torchvision": "load_torchvision",
    "diffusion.sampling": "SamplerOptions ddim_sample ddpm_sample",
    "diffusion.schedule": "NoiseSchedule",
    "diffusion.training": "train_diffusion",
    "eval.metrics": "frechet_distance frechet_oracle_distance psnr",
    "eval.harness": "model_quality sample_images score_images request_scores",
    "eval.prompts": "prompt_hits score_prompts",
    "models.autoencoder": "Autoencoder linear_probe train_autoencoder",
    "models.clip": (
        "CLIP CLIPRecipe ResNetEncoder TextEncoder VisionTransformer "
        "contrastive_loss load_clip"
    ),
    "models.digits": "DigitClassifier read_digits train_digit_classifier",
    "models.oracle": "Oracle load_oracle train_oracle",
    "models.prior": (
        "ARPrior DiffusionPriorNet MLPPrior PCAQuantizer prior_condition rerank "
        "slerp"
    ),
    "models.unet": "UNet",
    "models.upsampler": "train_upsampler",
    "models.vae": "VAE elbo gaussian_kl reparameterize train_vae",
    "nn.attention": (
        "CrossAttention2d MultiHeadAttention SelfAttention2d "
        "attention causal_mask padding_mask"
    ),
    "nn.conv": "ConvDecoder ConvEncoder conv_block",
    "nn.embeddings": "TokenStates timestep_embedding",
    "nn.resample": "UPSAMPLERS make_upsampler",
    "nn.transformer": "GEGLU SpatialTransformer TransformerBlock",
    "pipelines.cascade": "load_upsampler",
    "pipelines.unclip": "UnCLIP load_unclip",
    "pipelines.first_stage": "KLAutoencoder load_first_stage",
    "pipelines.latent": "LatentDiffusion load_latent_diffusion",
    "tokenizers.bpe": "BPETokenizer",
    "ops.alias": (
        "aliasing_report blur_subsample energy_above power_spectrum zone_plate"
    ),
    "ops.arith": (
        "Layer ReceptiveField conv_output_size effective_kernel "
        "full_padding inputs_with_same_output pool_output_size "
        "receptive_field same_padding transposed_a "
        "transposed_output_size"
    ),
    "ops.conv": (
        "avg_pool2d conv2d conv2d_loops global_avg_pool2d "
        "global_max_pool2d max_pool2d sliding_windows"
    ),
    "ops.interp": "interpolate resample_matrix",
    "ops.upsample": (
        "checkerboard_score conv_transpose2d conv_transpose2d_scatter "
        "pixel_shuffle pixel_unshuffle"
    ),
    "viz.conv_figures": (
        "conv_animation conv_frame conv_frames_figure fan_in "
        "output_shape output_size_formula receptive_field_figure "
        "window_positions"
    ),
    "viz.grids": "ActualSize image_grid plot_history to_numpy_image",
    "viz.widgets": (
        "ConvExplorer InterpolationExplorer conv_explorer interpolation_explorer"
    ),
}
_HOME = {
    name: module for module, names in _PUBLIC.items() for name in names.split()
}
_SUBPACKAGES = (
    "core",
    "data",
    "ops",
    "nn",
    "diffusion",
    "models",
    "eval",
    "viz",
    "exercises",
    "results",
    "tokenizers",
    "pipelines",
)

__all__ = sorted([*_HOME, *_SUBPACKAGES])
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562); cache the name."""
    if name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    else:
        raise AttributeError(f"module 'minigen' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
