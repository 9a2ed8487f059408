"""One drift decision for a whole window across many features.

With 100 features tested at α = 0.05 every window, about five features "drift"
by chance each time, and a dataset-level alert built on "any feature drifted"
fires every window. Correcting the per-feature p-values fixes that:

- ``benjamini_hochberg`` controls the false discovery rate at α: among the
  features reported as drifted, the expected share of false alarms is at most
  α (``scipy.stats.false_discovery_control``; valid for independent or
  positively dependent tests);
- ``bonferroni`` controls the family-wise error rate: the chance of any false
  alarm in a window is at most α (p-values multiplied by the number of tests);
- ``none`` uses the raw p-values.

The dataset has drifted when at least ``min_features`` features drift after
correction. Features without a p-value (insufficient data, or a test such as
fixed-threshold PSI that has none) are not tested and listed as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import stats

from detectors.errors import DetectorError, check_float, check_int
from detectors.result import DriftResult

Correction = Literal["benjamini_hochberg", "bonferroni", "none"]
CORRECTIONS: tuple[str, ...] = ("benjamini_hochberg", "bonferroni", "none")


@dataclass(frozen=True)
class DatasetDriftDecision:
    """Outcome of the multiple-testing correction for one window.

    Attributes
    ----------
    correction, alpha, min_features
        The settings used.
    n_tested
        Features with a p-value.
    drifted_features
        Features that drifted after correction, most significant first.
    adjusted_p_values
        Feature → corrected p-value (tested features only).
    untested
        Features without a p-value.
    drifted
        ``len(drifted_features) >= min_features``.

    Examples
    --------
    >>> decision = dataset_drift({"age": 0.001, "plan": 0.4, "zip": None})
    >>> decision.drifted_features, decision.n_drifted, decision.untested
    (('age',), 1, ('zip',))
    """

    correction: Correction
    alpha: float
    min_features: int
    n_tested: int
    drifted_features: tuple[str, ...]
    adjusted_p_values: Mapping[str, float] = field(default_factory=dict)
    untested: tuple[str, ...] = ()
    drifted: bool = False

    @property
    def n_drifted(self) -> int:
        """Number of features that drifted after correction."""
        return len(self.drifted_features)


def p_values_of(results: Mapping[str, DriftResult]) -> dict[str, float | None]:
    """Feature → p-value of its result (None when insufficient or undefined).

    Examples
    --------
    >>> from detectors.result import insufficient
    >>> p_values_of({"age": insufficient("ks", 0.05, 10, 0)})
    {'age': None}
    """
    return {
        name: None if result.insufficient_data else result.p_value
        for name, result in results.items()
    }


def dataset_drift(
    p_values: Mapping[str, float | None],
    *,
    correction: Correction = "benjamini_hochberg",
    alpha: float = 0.05,
    min_features: int = 1,
) -> DatasetDriftDecision:
    """Correct a window's per-feature p-values and decide for the dataset.

    Parameters
    ----------
    p_values
        Feature → p-value in [0, 1], or None when not tested.
    correction
        ``benjamini_hochberg`` (default), ``bonferroni`` or ``none``.
    alpha
        Error rate in (0, 1).
    min_features
        Drifted features (>= 1) needed for a dataset-level drift.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> calm = {f"f{i}": float(p) for i, p in enumerate(rng.uniform(size=100))}
    >>> sum(p <= 0.05 for p in calm.values())  # uncorrected: false alarms
    6
    >>> dataset_drift(calm).drifted
    False
    >>> calm["f0"] = 1e-9
    >>> decision = dataset_drift(calm, correction="bonferroni")
    >>> decision.drifted_features, decision.drifted
    (('f0',), True)
    """
    if correction not in CORRECTIONS:
        raise DetectorError(
            f"correction must be one of {', '.join(CORRECTIONS)} (got {correction!r})"
        )
    alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True, high_open=True)
    min_features = check_int("min_features", min_features, 1)
    names = [name for name, value in p_values.items() if value is not None]
    untested = tuple(name for name, value in p_values.items() if value is None)
    raw = np.array([p_values[name] for name in names], dtype=np.float64)
    if raw.size and (not np.all(np.isfinite(raw)) or raw.min() < 0 or raw.max() > 1):
        raise DetectorError("p_values must be numbers in [0, 1] or None")
    if raw.size == 0:
        adjusted = raw
    elif correction == "benjamini_hochberg":
        adjusted = np.asarray(stats.false_discovery_control(raw, method="bh"), dtype=np.float64)
    elif correction == "bonferroni":
        adjusted = np.minimum(raw * raw.size, 1.0)
    else:
        adjusted = raw
    order = np.argsort(adjusted, kind="stable")
    drifted = tuple(names[i] for i in order if adjusted[i] <= alpha)
    return DatasetDriftDecision(
        correction=correction,
        alpha=alpha,
        min_features=min_features,
        n_tested=len(names),
        drifted_features=drifted,
        adjusted_p_values={name: float(value) for name, value in zip(names, adjusted, strict=True)},
        untested=untested,
        drifted=len(drifted) >= min_features,
    )
