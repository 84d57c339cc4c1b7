"""Building blocks of the book's networks, shared by every chapter's models.

- `layers`: group_norm, norm_act, zero_init, downsample, and CheckedModule (input
  checks in a forward pre-hook, so that a displayed `forward` is the math);
- `attention`: attention(q, k, v, mask), causal_mask, padding_mask, combine_masks,
  MultiHeadAttention (self- and cross-attention), SelfAttention2d and
  CrossAttention2d for feature maps;
- `transformer`: the pre-LN TransformerBlock (causal and padding masks, optional
  cross-attention) of the CLIP text encoder, the ViT and the DALL-E 2 prior; the
  SpatialTransformer and GEGLU of latent diffusion;
- `embeddings`: timestep, positional and condition embeddings;
- `residual`: the U-Net's ResidualBlock with scale-shift conditioning;
- `resample`: x2 upsamplers (transposed convolution, resize-convolution, pixel
  shuffle);
- `conv`: ConvEncoder and ConvDecoder of the autoencoder and the VAE.
"""
