"""Jensen–Shannon distance between the reference and a window.

Notes
-----
On the same bins as PSI (coarse reference-quantile bins for numeric features,
categories plus the other/unseen bucket for categorical ones), with
``M = (P + Q) / 2``::

    JS = sqrt( (KL(P || M) + KL(Q || M)) / 2 )    (base-2 logarithms)

a metric in [0, 1] that, unlike PSI, needs no epsilon for empty bins. The
default threshold 0.1 is the customary one. The terms come from
``scipy.special.rel_entr``; a rounding residue below zero is clamped to 0.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special

from detectors.coarse import DEFAULT_COARSE_BINS
from detectors.distributions import binned_counts
from detectors.errors import check_float, check_int
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult, decide, insufficient, too_few
from detectors.sketch import CategoricalSketch, NumericSketch, check_pair

DEFAULT_THRESHOLD = 0.1


def jensenshannon_distance(
    reference_counts: NDArray[np.int64], current_counts: NDArray[np.int64]
) -> float:
    """Base-2 Jensen–Shannon distance of two aligned count vectors (positive totals).

    Examples
    --------
    >>> jensenshannon_distance(np.array([1, 0]), np.array([0, 1]))
    1.0
    >>> jensenshannon_distance(np.array([3, 1]), np.array([6, 2]))
    0.0
    """
    reference = reference_counts / reference_counts.sum()
    current = current_counts / current_counts.sum()
    middle = (reference + current) / 2
    divergence = float(
        np.sum(special.rel_entr(reference, middle)) + np.sum(special.rel_entr(current, middle))
    )
    return math.sqrt(max(0.0, divergence / (2 * math.log(2))))


def jensenshannon(
    profile: NumericProfile | CategoricalProfile,
    sketch: NumericSketch | CategoricalSketch,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = DEFAULT_COARSE_BINS,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> DriftResult:
    """Jensen–Shannon distance of a window from the reference.

    Parameters
    ----------
    profile, sketch
        Reference profile and the window's sketch on it (numeric or categorical).
    threshold
        Distance in [0, 1] at or above which the window has drifted (default 0.1).
    bins
        Coarse reference-quantile bins for numeric features, 2 to 1,000.
    min_samples
        Fewest values on each side (>= 1) for a result.

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a"] * 500 + ["b"] * 500)
    >>> window = CategoricalSketch.empty(profile).update(["a"] * 300 + ["b"] * 700)
    >>> result = jensenshannon(profile, window)
    >>> result.drifted, round(result.statistic, 3)
    (True, 0.174)
    """
    threshold = check_float("threshold", threshold, 0.0, 1.0)
    bins = check_int("bins", bins, 2, 1000)
    check_pair("jensenshannon", profile, sketch)
    n_reference, n_current = profile.n, sketch.n
    if too_few(n_reference, n_current, min_samples):
        return insufficient("jensenshannon", threshold, n_reference, n_current)
    reference, current = binned_counts(profile, sketch, bins)
    statistic = jensenshannon_distance(reference, current)
    return decide(
        "jensenshannon", "statistic_at_least", statistic, None, threshold, n_reference, n_current
    )
