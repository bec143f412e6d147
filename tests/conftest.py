import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def linear():
    from course_utils import NoiseSchedule
    return NoiseSchedule(T=1000, kind="linear")


@pytest.fixture
def toy():
    from course_utils import GaussianMixture2D
    return GaussianMixture2D(weights=[0.5, 0.3, 0.2])
