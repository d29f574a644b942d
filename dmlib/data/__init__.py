"""Data for the course: 2-D toy sets, Gaussian mixtures, MNIST (checksummed), loaders.

==============  ==========================================================  ========
module          what it holds                                               chapter
==============  ==========================================================  ========
``mixture``     ``GaussianMixture`` (density, score, entropy, q(x_t))        1, 4, 6
``toy2d``       moons, swiss roll, 8 Gaussians, checkerboard, gmm            3, 6
``mnist``       MNIST from data/mnist/, SHA-256 verified                     3, 7
``loaders``     seeded ``DataLoader`` over tensors, endless batches          6, 7
==============  ==========================================================  ========
"""

from .loaders import infinite_batches, tensor_loader
from .mixture import GaussianMixture, default_gmm2d, ring_gmm
from .mnist import MNIST_DIR, MNIST_SHA256, load_mnist, mnist_dir, verify_mnist
from .toy2d import (CHECKERBOARD_ENTROPY, TOY_DATASETS, checkerboard, checkerboard_log_prob,
                    eight_gaussians, gmm, make_toy, moons, swiss_roll)

__all__ = [
    "GaussianMixture", "default_gmm2d", "ring_gmm",
    "TOY_DATASETS", "make_toy", "moons", "swiss_roll", "eight_gaussians", "checkerboard",
    "gmm", "checkerboard_log_prob", "CHECKERBOARD_ENTROPY",
    "MNIST_DIR", "MNIST_SHA256", "mnist_dir", "verify_mnist", "load_mnist",
    "tensor_loader", "infinite_batches",
]
