"""Exercises of chapters 1 to 8, checked automatically.

The reader writes a function; a checker runs it on deterministic cases (hand-picked
corners first, then seeded random ones) and compares every answer with an
independent reference, mostly what torch itself does: the real output shape of
``F.conv2d`` and ``F.conv_transpose2d``, the values of ``F.max_pool2d``, the
gradient footprint of a stack of convolutions, the weights ``F.interpolate`` gives
each input pixel, the values of ``F.pixel_shuffle``, the mean squared error of
``F.mse_loss``, the KL divergence of ``torch.distributions``, the affine transform
(with its gradient) of ``torch.distributions.transforms.AffineTransform``, CLIP's
loss as ``F.cross_entropy`` of the logits and of their transpose; and brute-force
loops for a step of BPE training, for zero-shot classification and for reranking
prior samples; a rotation in the plane of two vectors for slerp; DDIM's step as an
interpolation of x_t and x0; ``F.scaled_dot_product_attention`` for
cross-attention and ``torch.where`` for the inpainting blend. So a checker never
trusts the code it teaches, and its source gives no formula away. Whatever the
reader's code does (a wrong answer, an exception), a checker does not raise: it
returns a :class:`CheckResult` that shows the first counterexample.

The package: ``engine`` runs the cases and judges the answers; one module per
chapter (``ch01_convolution``, ``ch02_upsampling``, ``ch03_autoencoder``,
``ch04_vae``, ``ch05_diffusion``, ``ch06_clip``, ``ch07_dalle2``, ``ch08_latent``)
holds, for each of its exercises, the checker, the reference and the cases one
after another, and names the papers. A new chapter adds a module and re-exports
its checkers here, so that a notebook calls
``exercises.check_conv_output_size(my_fn)``.
"""

from minigen.exercises.ch01_convolution import (
    check_conv_output_size,
    check_max_pool2d,
    check_receptive_field,
    check_transposed_output_size,
)
from minigen.exercises.ch02_upsampling import (
    check_bilinear_weights,
    check_pixel_shuffle,
)
from minigen.exercises.ch03_autoencoder import check_psnr
from minigen.exercises.ch04_vae import check_gaussian_kl, check_reparameterize
from minigen.exercises.ch05_diffusion import check_ddim_step, check_q_sample
from minigen.exercises.ch06_clip import (
    check_info_nce,
    check_merge_step,
    check_zero_shot_classify,
)
from minigen.exercises.ch07_dalle2 import (
    check_prior_ddim_step,
    check_rerank,
    check_slerp,
)
from minigen.exercises.ch08_latent import (
    check_cross_attention,
    check_img2img_start,
    check_inpainting_blend,
)
from minigen.exercises.engine import CheckResult

__all__ = [
    "CheckResult",
    "check_conv_output_size",
    "check_transposed_output_size",
    "check_max_pool2d",
    "check_receptive_field",
    "check_bilinear_weights",
    "check_pixel_shuffle",
    "check_psnr",
    "check_gaussian_kl",
    "check_reparameterize",
    "check_q_sample",
    "check_ddim_step",
    "check_info_nce",
    "check_merge_step",
    "check_zero_shot_classify",
    "check_slerp",
    "check_prior_ddim_step",
    "check_rerank",
    "check_cross_attention",
    "check_img2img_start",
    "check_inpainting_blend",
]
