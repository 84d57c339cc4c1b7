"""Measuring models and their samples.

- `metrics`: PSNR, total variation between distributions, and the Frechet distance
  between Gaussian fits of features (on the chapter-1 oracle's features: the Frechet
  oracle distance, this book's FID);
- `harness`: sampling a diffusion model of the shapes world in batches and scoring
  the samples with the oracle, shared by notebooks and benchmarks;
- `prompts`: text -> image judged by the oracle (one- and two-object prompts),
  and the held-out editing problems of chapter 8 (inpainting a cell).
"""
