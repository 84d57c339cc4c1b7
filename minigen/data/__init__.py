"""The book's data.

- `shapes`: the procedural shapes world, scenes of coloured shapes on a grid with
  exact labels and captions, each scene a pure function of (seed, split, index);
- `captions`: captions of those scenes in several phrasings, in English and Chinese,
  and hard negatives (colours or places swapped, one attribute changed);
- `photo`: `grace_hopper()`, the portrait matplotlib ships, for image operations on
  a natural image;
- `torchvision`: MNIST, Fashion-MNIST and CIFAR-10 as tensors, where the internet is
  reachable.
"""
