"""The diffusion itself, the part of the package a learner reads beside the notebooks.

- ``schedule``: the forward process q(x_t | x_0) and the posterior q(x_{t-1} | x_t, x_0)
- ``models``: the networks (time-map and time-embedding U-Nets, the noisy classifier, the evaluator)
- ``sampling``: one reverse step of DDPM and of DDIM, and the loop that runs them
- ``guidance``: classifier guidance and classifier-free guidance, one line each, and the Guidance object
- ``training``: the losses and the training loop
- ``data``: MNIST, and the conversions between pixel ranges
- ``toy``: a 2-D Gaussian mixture whose exact score is known
- ``device``: where to compute, bf16 autocast, seeds

Nothing here imports the course's tooling (checks, plots, weights, the explorer, ...): a test holds it so.
"""
