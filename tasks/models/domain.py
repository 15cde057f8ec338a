"""Applicability domain: is a row near the rows a model was trained on?

A model is trusted where it has seen similar rows. The features are standardized (training
medians fill missing values, training means and standard deviations scale) and projected
on the first principal components of the training rows (at most :data:`MAX_COMPONENTS`,
enough to explain :data:`VARIANCE_KEPT` of the variance); a row's distance to the training
data is its mean Euclidean distance to its :data:`NEIGHBOURS` nearest training rows there.

The threshold is what held-out rows show: each training row's distance to the rows of
the other cross-validation folds, and its :data:`THRESHOLD_QUANTILE` quantile. A row
beyond it is farther from the training data than 99 % of rows the model was validated on:
one in a hundred rows like the training rows is flagged (a false alarm rate low enough
that a flag means something), and since the out-of-fold distances are measured against
four fifths of the training rows they run slightly larger than distances to all of them,
which errs towards fewer false alarms.

Stored with the model: the preprocessing (medians, means, scales), the components and
the training rows' projections as float32 (for 3,000 rows and 16 components, 190 kB).
Prediction is blocked and uses a KD-tree, so a million candidates take seconds.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from matscreen.tasks.errors import ModelError

#: Most principal components kept (KD-trees stay efficient at this dimension).
MAX_COMPONENTS = 16

#: Share of the standardized features' variance the kept components explain, at most.
VARIANCE_KEPT = 0.95

#: Nearest training rows whose mean distance is a row's distance to the training data.
NEIGHBOURS = 5

#: Quantile of the out-of-fold distances of the training rows used as the threshold.
THRESHOLD_QUANTILE = 0.99

#: Rows projected and queried per block.
_BLOCK = 50000


def _encode(array: np.ndarray) -> dict[str, Any]:
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(data.shape), "float32": base64.b64encode(data.tobytes()).decode()}


def _decode(state: dict[str, Any]) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(state["float32"]), dtype="<f4")
    return raw.reshape(state["shape"]).astype(np.float64)


@dataclass(frozen=True)
class Domain:
    """The fitted applicability domain of a model (see the module documentation).

    Attributes
    ----------
    medians, means, scales
        Per feature column: fill value for missing entries, centre and scale.
    components
        (k, n_features) principal axes of the standardized training rows.
    train_points
        (n_train, k) projections of the training rows.
    neighbours
        How many nearest training rows a distance averages over.
    threshold
        Distances above it are out of the domain.
    """

    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    components: np.ndarray
    train_points: np.ndarray
    neighbours: int
    threshold: float

    def project(self, x: np.ndarray) -> np.ndarray:
        """Standardized features projected on the principal components."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.means):
            raise ModelError(f"domain: expected {len(self.means)} feature columns, got {x.shape}")
        filled = np.where(np.isfinite(x), x, self.medians)
        return ((filled - self.means) / self.scales) @ self.components.T

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mean distance of each row to its nearest training rows, block by block.

        Raises
        ------
        ModelError
            If the matrix has another number of columns than the training rows.
        """
        tree = self._tree()
        out = np.empty(len(x))
        for start in range(0, len(x), _BLOCK):
            points = self.project(x[start : start + _BLOCK])
            k = min(self.neighbours, len(self.train_points))
            found, _ = tree.query(points, k=k)
            out[start : start + len(points)] = np.asarray(found).reshape(len(points), k).mean(1)
        return out

    def _tree(self) -> Any:
        from sklearn.neighbors import KDTree

        cached = self.__dict__.get("_kdtree")
        if cached is None:
            cached = KDTree(self.train_points)
            object.__setattr__(self, "_kdtree", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        """As JSON types (arrays as base64 float32)."""
        return {
            "medians": self.medians.tolist(),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "components": _encode(self.components),
            "train_points": _encode(self.train_points),
            "neighbours": self.neighbours,
            "threshold": self.threshold,
            "threshold_quantile": THRESHOLD_QUANTILE,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Domain:
        """Rebuild from :meth:`to_dict`.

        The standardization is kept in float64 and the projections are rebuilt from
        float32; a reloaded domain measures distances to within float32 rounding.
        """
        return cls(
            medians=np.asarray(state["medians"], dtype=np.float64),
            means=np.asarray(state["means"], dtype=np.float64),
            scales=np.asarray(state["scales"], dtype=np.float64),
            components=_decode(state["components"]),
            train_points=_decode(state["train_points"]),
            neighbours=int(state["neighbours"]),
            threshold=float(state["threshold"]),
        )


def fit_domain(x: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]) -> Domain:
    """The applicability domain of the training rows, its threshold from the folds.

    Parameters
    ----------
    x
        Features of the training rows.
    folds
        The cross-validation (fit rows, held rows) pairs of the training.

    Raises
    ------
    ModelError
        If there are fewer training rows than :data:`NEIGHBOURS` + 1.
    """
    from sklearn.neighbors import KDTree

    x = np.asarray(x, dtype=np.float64)
    if len(x) <= NEIGHBOURS:
        raise ModelError(f"domain: {len(x)} training rows, more than {NEIGHBOURS} needed")
    finite = np.isfinite(x)
    with np.errstate(all="ignore"):
        has_value = finite.any(axis=0)
        medians = np.zeros(x.shape[1])
        medians[has_value] = np.nanmedian(np.where(finite, x, np.nan)[:, has_value], axis=0)
    filled = np.where(finite, x, medians)
    means = filled.mean(axis=0)
    std = filled.std(axis=0)
    scales = np.where(std > 0, std, 1.0)
    standardized = (filled - means) / scales
    _, singular, axes = np.linalg.svd(standardized, full_matrices=False)
    variance = singular**2
    explained = np.cumsum(variance) / max(float(variance.sum()), 1e-300)
    k = int(np.searchsorted(explained, VARIANCE_KEPT) + 1)
    k = max(1, min(k, MAX_COMPONENTS, int(np.sum(singular > 1e-9 * singular[0])) or 1))
    components = axes[:k]
    # float32 round trip now, so the stored domain measures exactly what this one does.
    components = components.astype("<f4").astype(np.float64)
    points = (standardized @ components.T).astype("<f4").astype(np.float64)
    held_distance = np.empty(len(x))
    for fit_rows, held_rows in folds:
        k_near = min(NEIGHBOURS, len(fit_rows))
        found, _ = KDTree(points[fit_rows]).query(points[held_rows], k=k_near)
        held_distance[held_rows] = found.mean(axis=1)
    threshold = float(np.quantile(held_distance, THRESHOLD_QUANTILE))
    return Domain(medians, means, scales, components, points, NEIGHBOURS, threshold)
