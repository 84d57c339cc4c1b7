"""Chapters 1 and 2 from scratch, each function checked against torch or PIL.

- arith: output sizes of convolution, pooling and transposed convolution;
  receptive fields.
- conv: convolution (Python loops, then one einsum); max, average, global pooling.
- interp: nearest, bilinear and bicubic resizing as resampling matrices; PIL.
- alias: test images, spectra, aliasing and anti-aliased downsampling.
- upsample: transposed convolution, pixel shuffle, the checkerboard score.
"""
