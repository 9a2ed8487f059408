"""Performance results and what the sufficient-statistics classes have in common.

Performance windows stay open for late labels for days and are computed per
partition, so their state must merge exactly like the drift sketches. Instead
of river's streaming metric objects (which update one event at a time and do
not add up across partitions), each task keeps additive sufficient statistics
(:mod:`detectors.classification`, :mod:`detectors.regression`) and computes
every metric from them on demand. Integer counts merge exactly; float sums
merge by IEEE addition (commutative, associative up to rounding, ~1e-16
relative).

Where a ratio has a zero denominator the value follows scikit-learn's default
(``zero_division`` → 0.0); metrics that scikit-learn refuses to compute (ROC
AUC with one class present, losses without any score) are None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from detectors.errors import DetectorError, check_int
from schemas.vocabulary import METRICS_BY_TASK


@dataclass(frozen=True)
class PerformanceResult:
    """One performance metric of one window.

    Attributes
    ----------
    metric
        Metric name (see ``schemas.vocabulary.METRICS_BY_TASK``).
    value
        The metric, or None when undefined or ``insufficient_data``.
    n_labelled
        Labelled (for score metrics: scored and labelled) events it is based on.
    error_bound
        Largest possible difference from the exact metric on the raw values
        (0 for exact metrics; ROC AUC from score histograms is not exact).
    insufficient_data
        Fewer than ``min_labelled`` events.

    Examples
    --------
    >>> PerformanceResult("accuracy", 0.93, 1200).to_dict()["value"]
    0.93
    """

    metric: str
    value: float | None
    n_labelled: int
    error_bound: float = 0.0
    insufficient_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready)."""
        return asdict(self)


def check_metrics(metrics: Iterable[str], task: str) -> tuple[str, ...]:
    """Validate metric names for a task.

    Examples
    --------
    >>> check_metrics(["mae"], "regression")
    ('mae',)
    >>> check_metrics(["auc"], "binary")
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: metrics: 'auc' is not a binary metric; valid: accuracy, ...
    """
    valid = METRICS_BY_TASK[task]
    names = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    for name in names:
        if name not in valid:
            raise DetectorError(
                f"metrics: {name!r} is not a {task} metric; valid: {', '.join(valid)}"
            )
    return names


def result(
    metric: str,
    value: float | None,
    n_labelled: int,
    min_labelled: int,
    error_bound: float = 0.0,
) -> PerformanceResult:
    """A result, or an insufficient-data result below ``min_labelled`` events.

    Examples
    --------
    >>> result("mae", 1.5, 10, min_labelled=50).insufficient_data
    True
    """
    if n_labelled < min_labelled:
        return PerformanceResult(metric, None, n_labelled, 0.0, True)
    return PerformanceResult(
        metric, None if value is None else float(value), n_labelled, float(error_bound)
    )


def check_min_labelled(min_labelled: int) -> int:
    """Validate ``min_labelled`` (an integer >= 1).

    Examples
    --------
    >>> check_min_labelled(0)
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: min_labelled must be an integer >= 1 (got 0)
    """
    return check_int("min_labelled", min_labelled, 1)


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or 0.0 when the denominator is 0 (scikit-learn's default).

    Examples
    --------
    >>> ratio(3, 4), ratio(0, 0)
    (0.75, 0.0)
    """
    return numerator / denominator if denominator else 0.0
