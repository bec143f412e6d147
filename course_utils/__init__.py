"""course_utils: the shared code of the guided-diffusion course.

Everything the notebooks and the tests rely on is importable from here.
"""
from .data import MNIST, load_mnist, to_model_range
from .device import (autocast_for, bf16_is_fast, fast_mode, pick_device, sample_count, seed_everything,
                     training_minutes)
from .guidance import NULL_LABEL, cfg_eps, validate_labels, validate_scale, classifier_grad, guided_eps, guided_mean
from .models import (EpsUNet, Evaluator, MLPDenoiser, NoisyClassifier, TimeMapUNet, UNet,
                     count_parameters, sinusoidal_embedding, time_map)
from .plotting import image_grid, plot_chains, plot_losses, plot_schedules, plot_trajectory, show_images
from .sampling import (Guidance, Step, Trajectory, ddim_sample, ddim_step, spaced_timesteps, ddpm_sample, ddpm_step, predict,
                       record_trajectory, sampling_steps)
from .schedule import NoiseSchedule
from .live import LiveView, sample_preview
from .pretrained import load_model, load_pretrained, my_models_dir, save_my_model
from .recipes import train_live
from .toy import GaussianMixture2D
from .training import (EMA, Budget, denoiser_loss, fit, noisy_classifier_loss, one_cycle, train_classifier,
                       train_denoiser)

__all__ = [
    "NULL_LABEL",
    "MNIST", "load_mnist", "to_model_range",
    "autocast_for", "bf16_is_fast", "fast_mode", "pick_device", "sample_count", "seed_everything",
    "training_minutes",
    "cfg_eps", "validate_labels", "validate_scale", "classifier_grad", "guided_eps", "guided_mean",
    "EpsUNet", "Evaluator", "MLPDenoiser", "NoisyClassifier", "TimeMapUNet", "UNet",
    "count_parameters", "sinusoidal_embedding", "time_map",
    "image_grid", "plot_chains", "plot_losses", "plot_schedules", "plot_trajectory", "show_images",
    "Guidance", "Step", "Trajectory", "ddim_sample", "ddim_step", "spaced_timesteps", "ddpm_sample", "ddpm_step", "predict",
    "record_trajectory", "sampling_steps",
    "NoiseSchedule", "GaussianMixture2D", "LiveView", "sample_preview", "load_model", "load_pretrained", "my_models_dir",
    "save_my_model", "train_live",
    "EMA", "Budget", "denoiser_loss", "fit", "one_cycle", "noisy_classifier_loss", "train_classifier", "train_denoiser",
]
