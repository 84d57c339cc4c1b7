"""Pipelines that chain the chapters' models, one layer above `minigen.models`.

- `unclip`: DALL·E 2 in miniature (chapter 7): chapter 6's CLIP, a decoder from
  CLIP image embeddings to pixels and three priors from captions to image
  embeddings, trained once and cached by `load_unclip`.
"""
