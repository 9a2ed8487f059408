"""Mergeable sufficient statistics for regression models.

Kept per window: the count, the sums of absolute and squared errors, the sum
of absolute percentage errors over non-zero targets (with the number of zero
targets left out), and the target's mean and sum of squared deviations for R².

The target's spread is kept as ``(n, mean, M2)`` and merged with Chan et al.'s
pairwise update rather than as ``Σy`` and ``Σy²``: the textbook
``Σy² - (Σy)²/n`` loses every digit when the mean is large next to the spread
(prices in the millions, timestamps), the pairwise form does not.

MAPE differs from ``sklearn.metrics.mean_absolute_percentage_error`` only for
zero targets: scikit-learn divides by machine epsilon there (a huge
number), driftline leaves them out and reports how many it left out
(``n_zero_target``).

References
----------
Chan, T. F., Golub, G. H., LeVeque, R. J. (1979). Updating formulae and a
pairwise algorithm for computing sample variances. Stanford CS report 79-773.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors import codec
from detectors.errors import DetectorError
from detectors.performance import PerformanceResult, check_metrics, check_min_labelled, result
from schemas.vocabulary import METRICS_BY_TASK

_FIELDS = (
    "n",
    "sum_abs_error",
    "sum_squared_error",
    "sum_abs_pct_error",
    "n_zero_target",
    "target_mean",
    "target_m2",
)


def _finite(name: str, values: ArrayLike) -> NDArray[np.float64]:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DetectorError(f"{name} must be numbers") from None
    if not np.all(np.isfinite(array)):
        raise DetectorError(f"{name} must be finite numbers (no None, NaN or inf)")
    return array


class RegressionStats:
    """Sufficient statistics of a regression model's labelled predictions.

    Examples
    --------
    >>> stats = RegressionStats().update([3.0, 5.0, 0.0], [2.5, 5.5, 1.0])
    >>> {name: round(r.value, 4) for name, r in stats.compute().items()}
    {'mae': 0.6667, 'rmse': 0.7071, 'mape': 0.1333, 'r2': 0.8816}
    >>> stats.n_zero_target
    1
    """

    def __init__(self) -> None:
        self.n = 0
        self.sum_abs_error = 0.0
        self.sum_squared_error = 0.0
        self.sum_abs_pct_error = 0.0
        self.n_zero_target = 0
        self.target_mean = 0.0
        self.target_m2 = 0.0

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> RegressionStats:
        """Add a batch of (target, prediction) pairs; returns ``self``."""
        target = _finite("y_true", y_true)
        predicted = _finite("y_pred", y_pred)
        if predicted.size != target.size:
            raise DetectorError(
                f"y_pred must have as many values as y_true ({target.size}, got {predicted.size})"
            )
        if target.size == 0:
            return self
        error = np.abs(target - predicted)
        nonzero = target != 0.0
        batch = RegressionStats()
        batch.n = int(target.size)
        batch.sum_abs_error = float(error.sum())
        with np.errstate(over="ignore"):  # errors past 1e154: the sum is inf, and RMSE with it
            batch.sum_squared_error = float(np.dot(error, error))
        batch.sum_abs_pct_error = float(np.sum(error[nonzero] / np.abs(target[nonzero])))
        batch.n_zero_target = int(target.size - np.count_nonzero(nonzero))
        if target.min() == target.max():
            # Exactly: the mean of a hundred 0.1s sums to 0.09999999999999998,
            # which left a spread of 1e-31 and an R² of -1e31 that one-by-one
            # updates (spread 0, R² 0) did not have.
            batch.target_mean, batch.target_m2 = float(target[0]), 0.0
        else:
            batch.target_mean = float(target.mean())
            deviation = target - batch.target_mean
            batch.target_m2 = float(np.dot(deviation, deviation))
        self._absorb(batch)
        return self

    def _absorb(self, other: RegressionStats) -> None:
        if other.n == 0:
            return
        if self.n == 0:
            for name in _FIELDS:
                setattr(self, name, getattr(other, name))
            return
        total = self.n + other.n
        delta = other.target_mean - self.target_mean
        self.target_m2 += other.target_m2 + delta * delta * self.n * other.n / total
        self.target_mean += delta * other.n / total
        self.n = total
        self.sum_abs_error += other.sum_abs_error
        self.sum_squared_error += other.sum_squared_error
        self.sum_abs_pct_error += other.sum_abs_pct_error
        self.n_zero_target += other.n_zero_target

    def merge(self, other: RegressionStats) -> RegressionStats:
        """A new object with both sets of predictions."""
        if not isinstance(other, RegressionStats):
            raise DetectorError(f"other must be a RegressionStats (got {type(other).__name__})")
        merged = RegressionStats()
        merged._absorb(self)
        merged._absorb(other)
        return merged

    @property
    def n_labelled(self) -> int:
        """Labelled predictions counted."""
        return self.n

    def compute(
        self, metrics: Iterable[str] = METRICS_BY_TASK["regression"], *, min_labelled: int = 1
    ) -> dict[str, PerformanceResult]:
        """The requested metrics (names from ``METRICS_BY_TASK["regression"]``).

        R² follows scikit-learn for a constant target: 1 when the predictions
        are exact, else 0.
        """
        names = check_metrics(metrics, "regression")
        min_labelled = check_min_labelled(min_labelled)
        n = self.n
        results: dict[str, PerformanceResult] = {}
        for name in names:
            if name == "mape":
                scored = n - self.n_zero_target
                value = self.sum_abs_pct_error / scored if scored else None
                results[name] = result(name, value, scored, min_labelled)
                continue
            if n == 0:
                results[name] = result(name, None, 0, min_labelled)
            elif name == "mae":
                results[name] = result(name, self.sum_abs_error / n, n, min_labelled)
            elif name == "rmse":
                results[name] = result(name, math.sqrt(self.sum_squared_error / n), n, min_labelled)
            elif self.target_m2 > 0:
                r2 = 1.0 - self.sum_squared_error / self.target_m2
                results[name] = result(name, r2, n, min_labelled)
            else:
                exact = 1.0 if self.sum_squared_error == 0 else 0.0
                results[name] = result(name, exact, n, min_labelled)
        return results

    def to_bytes(self) -> bytes:
        """Compact, exact serialisation (see :mod:`detectors.codec`)."""
        fields: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        return codec.encode("regression-stats", "regression", fields, {})

    @classmethod
    def from_bytes(cls, data: bytes) -> RegressionStats:
        """Read what :meth:`to_bytes` wrote."""
        _, _, fields, _ = codec.decode(data, "regression-stats")
        stats = cls()
        for name in _FIELDS:
            value = fields[name]
            setattr(stats, name, int(value) if name in ("n", "n_zero_target") else float(value))
        return stats

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RegressionStats):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELDS)

    __hash__ = None  # type: ignore[assignment]
