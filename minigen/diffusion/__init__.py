"""Diffusion models: schedules and the forward process, objectives, samplers,
training.

The public names of `schedule`, `objectives`, `sampling` and `training` are
importable from here, e.g. `minigen.diffusion.ddim_sample`; the 2-D toy with exact
scores is `diffusion.toy2d`. Conditions (class labels, embeddings, `TokenStates`)
and their NULL come from `minigen.nn.embeddings`.
"""

from minigen.diffusion.objectives import (
    OBJECTIVES,
    diffusion_loss,
    loss_weights,
    target,
    to_eps_and_x0,
)
from minigen.diffusion.sampling import (
    SamplerOptions,
    ddim_invert,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    ddpm_sample,
    guided_prediction,
    posterior_mean,
    predict_eps_and_x0,
)
from minigen.diffusion.schedule import (
    MAX_BETA,
    SCHEDULES,
    NoiseSchedule,
    q_sample,
    q_step,
)
from minigen.diffusion.training import train_diffusion
from minigen.nn.embeddings import TokenStates
