"""Two-sample chi-square test of homogeneity for a categorical feature.

Notes
-----
The reference and the window are the two rows of a 2 × C contingency table
over the categories plus the other/unseen bucket; columns empty on both sides
are dropped. The statistic and p-value are Pearson's, from
``scipy.stats.chi2_contingency`` (with Yates' continuity correction when the
table has one degree of freedom, scipy's default). Unlike a goodness-of-fit
test against fixed reference shares, this accounts for the reference being a
sample too, so a modest reference does not make every window look drifted.
With a single non-empty column there is nothing to compare: statistic 0,
p-value 1.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.distributions import binned_counts
from detectors.errors import check_float
from detectors.profile import CategoricalProfile
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult, decide, insufficient, too_few
from detectors.sketch import CategoricalSketch, check_pair

DEFAULT_THRESHOLD = 0.05
"""Significance level: drift when ``p_value <= 0.05``."""


def chi2(
    profile: CategoricalProfile,
    sketch: CategoricalSketch,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> DriftResult:
    """Chi-square test of a window's category frequencies against the reference's.

    Parameters
    ----------
    profile, sketch
        Reference profile and the window's sketch on it (categorical only).
    threshold
        Significance level in (0, 1): drift when ``p_value <= threshold``.
    min_samples
        Fewest values on each side (>= 1) for a result.

    Examples
    --------
    >>> profile = CategoricalProfile.build(["web"] * 700 + ["app"] * 300)
    >>> calm = CategoricalSketch.empty(profile).update(["web"] * 140 + ["app"] * 60)
    >>> chi2(profile, calm).drifted
    False
    >>> moved = CategoricalSketch.empty(profile).update(["web"] * 100 + ["app"] * 100)
    >>> result = chi2(profile, moved)
    >>> result.drifted, f"{result.p_value:.1e}"
    (True, '6.8e-08')
    """
    threshold = check_float("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
    check_pair("chi2", profile, sketch, kind="categorical")
    n_reference, n_current = profile.n, sketch.n
    if too_few(n_reference, n_current, min_samples):
        return insufficient("chi2", threshold, n_reference, n_current)
    reference, current = binned_counts(profile, sketch, 2)
    table = np.vstack([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return decide("chi2", "p_value_at_most", 0.0, 1.0, threshold, n_reference, n_current)
    result = stats.chi2_contingency(table)
    statistic = float(result.statistic)
    p_value = min(1.0, max(0.0, float(result.pvalue)))
    return decide("chi2", "p_value_at_most", statistic, p_value, threshold, n_reference, n_current)
