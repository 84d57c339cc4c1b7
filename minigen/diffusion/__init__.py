"""Diffusion models: schedules and the forward process, objectives, samplers, training.

The public names of `schedule`, `objectives`, `sampling` and `training` are importable from
here, e.g. `minigen.diffusion.ddim_sample`; the 2-D toy with exact scores is `diffusion.toy2d`.
"""

from minigen.diffusion.objectives import (
    OBJECTIVES,
    target,
    to_eps_and_x0,
    loss_weights,
    diffusion_loss,
)
from minigen.diffusion.sampling import (
    guided_prediction,
    posterior_mean,
    ddpm_sample,
    ddim_timesteps,
    ddim_sigma,
    ddim_step,
    ddim_sample,
    ddim_invert,
)
from minigen.diffusion.schedule import SCHEDULES, MAX_BETA, NoiseSchedule, q_sample, q_step
from minigen.diffusion.training import train_diffusion
