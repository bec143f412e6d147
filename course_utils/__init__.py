"""course_utils: the shared code of the guided-diffusion course.

Two parts (the README draws them):

- ``course_utils.core``: the diffusion itself, what a learner reads beside the notebooks: the noise
  schedule, the networks, the sampling steps and loop, guidance, training, the data. It imports
  nothing from the rest of the package.
- the course's tooling, here beside it: exercise checks, budgets, plots, the live training view,
  shipped weights and their recipes, evaluation, the guidance explorer, notebook generation, the CLI.

Everything the notebooks and the tests rely on is importable from here.
"""
# the core
from .core.data import MNIST, load_mnist, to_model_range
from .core.device import autocast_for, pick_device, seed_everything
from .core.guidance import (NULL_LABEL, Guidance, cfg_eps, classifier_grad, guided_eps, guided_mean, validate_labels,
                            validate_scale)
from .core.models import (EpsUNet, Evaluator, MLPDenoiser, NoisyClassifier, TimeMapUNet, UNet, count_parameters,
                          sinusoidal_embedding, time_map)
from .core.sampling import (Step, Trajectory, ddim_sample, ddim_step, ddpm_sample, ddpm_step, predict,
                            record_trajectory, sampling_steps, spaced_timesteps)
from .core.schedule import NoiseSchedule
from .core.toy import GaussianMixture2D
from .core.training import (EMA, denoiser_loss, min_snr_timesteps, min_snr_weight, noisy_classifier_loss, one_cycle,
                            training_steps)
# the course's tooling
from .cpu import bf16_is_fast
from .fitting import Budget, fit, train_classifier, train_denoiser
from .budgets import fast_mode, sample_count, training_minutes
from .live import LiveView, sample_preview
from .plotting import (describe_figure, describe_figures_in_notebooks, image_grid, plot_chains, plot_losses,
                       plot_schedules, plot_trajectory, show_images)
from .pretrained import load_model, load_pretrained, my_models_dir, save_my_model
from .recipes import LIVE_GOALS, train_live, trained_enough

__all__ = [
    "NULL_LABEL",
    "MNIST", "load_mnist", "to_model_range",
    "autocast_for", "bf16_is_fast", "fast_mode", "pick_device", "sample_count", "seed_everything",
    "training_minutes",
    "cfg_eps", "validate_labels", "validate_scale", "classifier_grad", "guided_eps", "guided_mean",
    "EpsUNet", "Evaluator", "MLPDenoiser", "NoisyClassifier", "TimeMapUNet", "UNet",
    "count_parameters", "sinusoidal_embedding", "time_map",
    "describe_figure", "image_grid", "plot_chains", "plot_losses", "plot_schedules", "plot_trajectory", "show_images",
    "Guidance", "Step", "Trajectory", "ddim_sample", "ddim_step", "spaced_timesteps", "ddpm_sample", "ddpm_step",
    "predict", "record_trajectory", "sampling_steps",
    "NoiseSchedule", "GaussianMixture2D", "LiveView", "sample_preview", "load_model", "load_pretrained",
    "my_models_dir", "save_my_model", "train_live", "trained_enough", "LIVE_GOALS",
    "EMA", "Budget", "denoiser_loss", "fit", "min_snr_timesteps", "min_snr_weight", "one_cycle", "training_steps",
    "noisy_classifier_loss", "train_classifier", "train_denoiser",
]

# in a notebook, every figure shown gets its alt text (its title and panels) in the output's metadata
describe_figures_in_notebooks()
