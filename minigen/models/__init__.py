"""The chapters' models, each with its trainer and the functions that use it.

- `oracle`: the CNN that reads a shapes-world image back into per-cell labels
  (chapter 1), `load_oracle` (trained once, cached, resumed if interrupted) and
  `parse`, which judges generated images for later chapters;
- `upsampler`: the 16x16 -> 32x32 super-resolution model of chapter 2 and the
  checkerboard scores of each x2 upsampler;
- `autoencoder`: the (denoising) autoencoder of chapter 3, its metrics, latent
  features and the linear probe;
- `vae`: the VAE of chapter 4, the ELBO, beta, active units and the two gradient
  estimators;
- `unet`: the diffusion U-Net of chapter 5;
- `clip`: CLIP's encoders, loss and trainer of chapter 6, `load_clip` (cached);
- `prior`: DALL·E 2's priors and the interpolation of chapter 7.

Every `train_*` takes `seed=` (the same seed, the same weights) and `checkpoint=`
with `checkpoint_every=`: an interrupted training resumes from the file bit for bit.
"""
