"""Small real data sets shipped with the package."""

import os

import numpy as np

_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load_digits(test_fraction=0.2, seed=0, dtype="float32", images=False):
    """The UCI handwritten digits (1797 8×8 images, labels 0..9; CC BY 4.0, see
    graphc/data/DIGITS_LICENSE.txt), flattened to 64 features scaled to [0, 1] and split
    into train and test sets by a seeded shuffle.  With ``images=True`` the features keep
    their image form, (N, 1, 8, 8) in NCHW, for convolutional models (same split).

    Returns ``(x_train, y_train), (x_test, y_test)`` with int64 labels.

    Example::

        (xtr, ytr), (xte, yte) = gc.datasets.load_digits()
        xtr.shape   # (1438, 64)
        (xtr, ytr), _ = gc.datasets.load_digits(images=True)
        xtr.shape   # (1438, 1, 8, 8)
    """
    with np.load(os.path.join(_DATA, "digits.npz"), allow_pickle=False) as f:
        pixels, labels = f["images"], f["labels"]
    shape = (len(pixels), 1, 8, 8) if images else (len(pixels), -1)
    x = (pixels.reshape(shape) / 16.0).astype(dtype)
    y = labels.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])
