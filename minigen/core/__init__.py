"""What every chapter runs on, whatever it teaches.

- `profiles`: one notebook, three compute budgets (smoke, cpu, gpu) and `pick`;
- `runtime`: the device, mixed precision, seeds, `eval_mode` and a provenance line;
- `train`: the shared training loop (mixed precision, clipping, EMA, History,
  checkpoints that resume bit for bit);
- `validators`: the argument checks of every public entry point, one style of
  message, TypeError for a wrong type and ValueError for a wrong value;
- `show`: the source of a function or class, rendered in a notebook;
- `summary`: `layer_shapes`, a model's layers with their output shapes and parameter
  counts.
"""
