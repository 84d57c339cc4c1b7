"""Pipelines that chain the chapters' models, one layer above `minigen.models`.

- `unclip`: DALL·E 2 in miniature (chapter 7): chapter 6's CLIP, a decoder from
  CLIP image embeddings to pixels and three priors from captions to image
  embeddings, trained once and cached by `load_unclip`.
- `cascade`: the cascade's second stage, a diffusion upsampler from 32x32 to
  64x64 images conditioned on the low-resolution image, cached by
  `load_upsampler`.
"""
