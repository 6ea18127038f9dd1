"""Baselines the quality benchmarks compare with, run on the same images in the same run.

* Otsu: threshold of the blurred maximum-channel image, then closing and hole filling.
* Random forest: a pixel classifier on scikit-image's multiscale basic features (the approach of
  ilastik and APOC), trained on the same annotated images as our model.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology
from skimage.feature import multiscale_basic_features


def otsu_mask(image: np.ndarray, closing_radius: int = 5) -> np.ndarray:
    grey = image.max(axis=-1) if image.ndim == 3 else image
    blurred = filters.gaussian(grey.astype(np.float32), sigma=2)
    mask = blurred > filters.threshold_otsu(blurred)
    mask = morphology.closing(mask, morphology.disk(closing_radius))
    return ndi.binary_fill_holes(mask)


def features(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    image = (image - image.min()) / max(float(np.ptp(image)), 1e-6)
    return multiscale_basic_features(
        image, channel_axis=-1 if image.ndim == 3 else None, sigma_min=1, sigma_max=16
    )


#: :func:`features` under a name the methods' ``features`` arguments do not hide.
_compute_features = features


class RandomForestBaseline:
    """Random forest (50 trees) on multiscale intensity, edge and texture features."""

    def __init__(self, samples_per_image: int = 20000, seed: int = 0):
        from sklearn.ensemble import RandomForestClassifier

        self.samples_per_image = samples_per_image
        self.rng = np.random.default_rng(seed)
        self.forest = RandomForestClassifier(
            n_estimators=50, max_depth=16, n_jobs=-1, random_state=seed
        )
        self.train_seconds = 0.0

    def fit(
        self,
        images: list[np.ndarray],
        masks: list[np.ndarray],
        annotated: list[np.ndarray] | None = None,
        features: list[np.ndarray] | None = None,
    ) -> RandomForestBaseline:
        """Train on ``masks`` (foreground), only where ``annotated`` (default: everywhere).

        ``features`` may hold each image's :func:`features`, computed once by the caller.
        """
        start = time.perf_counter()
        xs, ys = [], []
        for k, (image, mask) in enumerate(zip(images, masks)):
            feats = features[k] if features is not None else _compute_features(image)
            feats = feats.reshape(-1, feats.shape[-1])
            flat = mask.reshape(-1).astype(np.uint8)
            where = (
                np.arange(flat.size)
                if annotated is None
                else np.flatnonzero(np.asarray(annotated[k]).reshape(-1))
            )
            pick = self.rng.choice(where, min(self.samples_per_image, where.size), replace=False)
            xs.append(feats[pick])
            ys.append(flat[pick])
        self.forest.fit(np.concatenate(xs), np.concatenate(ys))
        self.train_seconds = time.perf_counter() - start
        return self

    def predict(self, image: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Return the foreground mask (any label > 0)."""
        return self.predict_labels(image, features) > 0

    def predict_labels(self, image: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """Return the label image (the classes it was trained on)."""
        feats = _compute_features(image) if features is None else features
        return self.forest.predict(feats.reshape(-1, feats.shape[-1])).reshape(image.shape[:2])
