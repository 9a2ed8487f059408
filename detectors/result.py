"""The result every drift test returns, and how a decision is taken from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from detectors.errors import check_int

DEFAULT_MIN_SAMPLES = 100
"""Fewest values (in the window and in the reference) for a meaningful test.

The same default as ``drift.min_samples`` in the monitor configuration.
"""

Decision = Literal["p_value_at_most", "statistic_at_least"]
"""How a test decides: ``p_value <= threshold`` or ``statistic >= threshold``."""


@dataclass(frozen=True)
class DriftResult:
    """One drift test on one feature in one window.

    Attributes
    ----------
    method
        Registered name of the test (``ks``, ``psi``, …).
    statistic
        The test statistic, or None when ``insufficient_data``.
    p_value
        The p-value where the test defines one, else None.
    threshold
        The threshold the decision used (a significance level for p-value
        tests, a statistic level for the others).
    drifted
        The decision; always False when ``insufficient_data``.
    n_reference, n_current
        Non-missing values in the reference and in the window.
    insufficient_data
        Fewer than ``min_samples`` values on either side: no number is
        reported rather than a meaningless one.

    Examples
    --------
    >>> DriftResult("ks", 0.031, 0.2, 0.05, False, 5000, 1200).to_dict()["drifted"]
    False
    """

    method: str
    statistic: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    insufficient_data: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready; None where a number is not defined)."""
        return asdict(self)


def too_few(n_reference: int, n_current: int, min_samples: int) -> bool:
    """Whether either side has fewer than ``min_samples`` values (checks ``min_samples``).

    Examples
    --------
    >>> too_few(5_000, 99, 100), too_few(5_000, 100, 100)
    (True, False)
    """
    check_int("min_samples", min_samples, 1)
    return n_reference < min_samples or n_current < min_samples


def insufficient(method: str, threshold: float, n_reference: int, n_current: int) -> DriftResult:
    """The result of a test that had too few values to say anything.

    Examples
    --------
    >>> result = insufficient("psi", 0.2, 10_000, 3)
    >>> result.statistic, result.p_value, result.drifted, result.insufficient_data
    (None, None, False, True)
    """
    return DriftResult(method, None, None, threshold, False, n_reference, n_current, True)


def decide(
    method: str,
    decision: Decision,
    statistic: float,
    p_value: float | None,
    threshold: float,
    n_reference: int,
    n_current: int,
) -> DriftResult:
    """Build a result, deciding by the test's registered direction.

    Examples
    --------
    >>> decide("ks", "p_value_at_most", 0.2, 0.01, 0.05, 100, 100).drifted
    True
    >>> decide("psi", "statistic_at_least", 0.05, None, 0.2, 100, 100).drifted
    False
    """
    if decision == "p_value_at_most":
        drifted = p_value is not None and p_value <= threshold
    else:
        drifted = statistic >= threshold
    return DriftResult(
        method, float(statistic), p_value, float(threshold), bool(drifted), n_reference, n_current
    )
