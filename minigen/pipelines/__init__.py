"""Pipelines that chain the chapters' models, one layer above `minigen.models`.

- `unclip`: DALL·E 2 in miniature (chapter 7): chapter 6's CLIP, a decoder from
  CLIP image embeddings to pixels and three priors from captions to image
  embeddings, trained once and cached by `load_unclip`.
- `cascade`: the cascade's second stage, a diffusion upsampler from 32x32 to
  64x64 images conditioned on the low-resolution image, cached by
  `load_upsampler`.
- `first_stage`: latent diffusion's KL autoencoder (chapter 8), 32x32 images <->
  8x8x4 latents, and the scale factor; cached by `load_first_stage`.
- `latent`: Stable Diffusion in miniature (chapter 8): a U-Net on latents that
  cross-attends to a text encoder (frozen or joint), guidance, img2img and
  inpainting, cached by `load_latent_diffusion`.
"""
