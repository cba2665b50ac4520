"""``digits``: scikit-learn's 1,797 real 8x8 handwritten digits as 2-D point clouds (no download).

Each image is upsampled bilinearly to 20x20 and centred in a 28x28 frame (the MNIST
layout: a 20x20 digit with a 4-pixel border), scaled to 0..255, and turned into points
with the MNIST-pc rule (x = column, y = 27 - row) for pixels above :data:`THRESHOLD`,
which gives 118-243 points per cloud (median 181).
"""

from __future__ import annotations

import numpy as np

from ddeqs.data.mnist_pc import image_to_triples

THRESHOLD = 80.0  # intensity (0..255) above which a pixel becomes a point
TEST_SHARE = 0.2
SPLIT_SEED = 0
CLASS_NAMES = [str(i) for i in range(10)]


def digit_image(image8: np.ndarray) -> np.ndarray:
    """``(8, 8)`` sklearn digit (0..16) -> ``(28, 28)`` float image (0..255)."""
    from scipy.ndimage import zoom

    up = zoom(np.asarray(image8, dtype=np.float64) * (255.0 / 16.0), 20 / 8, order=1)
    return np.clip(np.pad(up, 4), 0.0, 255.0)


def load_split(split: str) -> tuple[list[np.ndarray], np.ndarray, list[str], dict]:
    """``(clouds (n_i, 2) float64, labels, names, info)`` of the deterministic train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    tr, te = train_test_split(idx, test_size=TEST_SHARE, random_state=SPLIT_SEED, stratify=d.target)
    chosen = np.sort(tr if split == "train" else te)
    clouds = [image_to_triples(digit_image(d.images[i]), np.random.default_rng([SPLIT_SEED, int(i)]),
                               THRESHOLD)[:, :2].astype(np.float64) for i in chosen]
    info = {"source": "sklearn.datasets.load_digits", "threshold": THRESHOLD, "test_share": TEST_SHARE,
            "split_seed": SPLIT_SEED, "skipped": []}
    return clouds, d.target[chosen].astype(np.int64), [f"digit-{i}" for i in chosen], info
