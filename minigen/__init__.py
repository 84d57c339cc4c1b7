"""minigen: the from-scratch PyTorch code of the minigen book on image generation.

Each module implements one concept and names the paper it follows; the book displays the code
with `minigen.show` and runs it. The public API is re-exported here.
"""
from . import (ae, alias, arith, blocks, data, diffusion, exercises, figures, interp, interp_figures, metrics, ops, oracle,
               toy2d, unet, upsample, vae, widgets)
from .ae import Autoencoder, linear_probe, train_autoencoder
from .alias import aliasing_report, blur_subsample, energy_above, power_spectrum, zone_plate
from .arith import (Layer, ReceptiveField, conv_output_size, effective_kernel, full_padding,
                    inputs_with_same_output, pool_output_size, receptive_field, same_padding, transposed_a,
                    transposed_output_size)
from .blocks import ConvDecoder, ConvEncoder, layer_shapes
from .data import (COLOURS, SHAPES, SIZES, SPLITS, SceneObject, Scenes, ShapesWorld, caption, grace_hopper,
                   load_torchvision, render)
from .diffusion import NoiseSchedule, ddim_sample, ddpm_sample, train_diffusion
from .figures import (conv_animation, conv_frame, conv_frames_figure, fan_in, output_shape, output_size_formula,
                      receptive_field_figure, window_positions)
from .interp import interpolate, resample_matrix
from .metrics import frechet_distance, frechet_oracle_distance
from .ops import (avg_pool2d, conv2d, conv2d_loops, global_avg_pool2d, global_max_pool2d, max_pool2d,
                  sliding_windows)
from .oracle import Oracle, load_oracle, train_oracle
from .profiles import PROFILES, current_profile, pick
from .runtime import Precision, choose_precision, cpu_supports_bf16, default_device, provenance, seed_everything
from .show import show
from .train import EMA, History, NonFiniteLossError, load_checkpoint, save_checkpoint, train
from .unet import UNet
from .upsample import (UPSAMPLERS, checkerboard_score, conv_transpose2d, conv_transpose2d_scatter,
                       make_upsampler, pixel_shuffle, pixel_unshuffle, psnr, train_upsampler)
from .vae import VAE, elbo, gaussian_kl, reparameterize, train_vae
from .viz import image_grid, plot_history, to_numpy_image
from .widgets import ConvExplorer, InterpolationExplorer, conv_explorer, interpolation_explorer

__version__ = "0.1.0"
