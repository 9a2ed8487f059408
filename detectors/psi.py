"""Population stability index (PSI) from a window sketch.

Notes
-----
With reference shares ``p_b`` and window shares ``q_b`` over ``B`` bins (the
coarse reference-quantile bins for numeric features, categories plus the
other/unseen bucket for categorical ones), shares below ``epsilon`` raised to
``epsilon`` so that empty bins stay finite::

    PSI = sum_b (q_b - p_b) * ln(q_b / p_b)  >= 0

Every term is non-negative. The usual reading is < 0.1 stable, 0.1–0.2 some
shift, >= 0.2 a shift worth acting on; the default threshold is 0.2.

A fixed threshold ignores sample size: with no drift at all,
``PSI ≈ (1/n + 1/m) · χ²(B - 1)``, so on a window of 100 values and 10 bins a
PSI of 0.1 is ordinary noise. Set ``sample_size_alpha`` to raise the threshold
to the ``1 - alpha`` quantile of that null distribution when it is higher::

    threshold = max(threshold, (1/n + 1/m) · χ²_{1-α}(B - 1))

and to report the matching approximate p-value
``P(χ²(B - 1) >= PSI / (1/n + 1/m))``. Large windows keep the fixed threshold
(a real but immaterial shift stays quiet), small ones stop firing by chance.
``B`` counts the bins that hold any value on either side.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.coarse import DEFAULT_COARSE_BINS
from detectors.distributions import binned_counts
from detectors.errors import check_float, check_int
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult, decide, insufficient, too_few
from detectors.sketch import CategoricalSketch, NumericSketch, check_pair

DEFAULT_THRESHOLD = 0.2
DEFAULT_EPSILON = 1e-4


def psi_value(
    reference_counts: NDArray[np.int64],
    current_counts: NDArray[np.int64],
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI of two aligned count vectors (both with a positive total).

    Examples
    --------
    >>> round(psi_value(np.array([50, 50]), np.array([30, 70])), 4)
    0.1695
    """
    reference = np.maximum(reference_counts / reference_counts.sum(), epsilon)
    current = np.maximum(current_counts / current_counts.sum(), epsilon)
    return float(np.sum((current - reference) * np.log(current / reference)))


def psi(
    profile: NumericProfile | CategoricalProfile,
    sketch: NumericSketch | CategoricalSketch,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = DEFAULT_COARSE_BINS,
    epsilon: float = DEFAULT_EPSILON,
    sample_size_alpha: float | None = None,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> DriftResult:
    """Population stability index of a window against the reference.

    Parameters
    ----------
    profile, sketch
        Reference profile and the window's sketch on it (numeric or categorical).
    threshold
        PSI level (>= 0) at or above which the window has drifted (default 0.2).
    bins
        Coarse reference-quantile bins for numeric features, 2 to 1,000.
    epsilon
        Floor of a bin's share, in (0, 0.1].
    sample_size_alpha
        When set, in (0, 1): sample-size-aware threshold and p-value (Notes).
    min_samples
        Fewest values on each side (>= 1) for a result.

    Examples
    --------
    >>> rng = np.random.default_rng(5)
    >>> profile = NumericProfile.build(rng.normal(size=50_000))
    >>> small = NumericSketch.empty(profile).update(rng.normal(size=100))
    >>> round(psi(profile, small).statistic, 3)
    0.108
    >>> aware = psi(profile, small, threshold=0.05, sample_size_alpha=0.01)
    >>> aware.drifted, round(aware.threshold, 3)
    (False, 0.217)
    >>> shifted = NumericSketch.empty(profile).update(rng.normal(0.5, 1, size=5_000))
    >>> psi(profile, shifted).drifted
    True
    """
    threshold = check_float("threshold", threshold, 0.0)
    epsilon = check_float("epsilon", epsilon, 0.0, 0.1, low_open=True)
    if sample_size_alpha is not None:
        sample_size_alpha = check_float(
            "sample_size_alpha", sample_size_alpha, 0.0, 1.0, low_open=True, high_open=True
        )
    bins = check_int("bins", bins, 2, 1000)
    check_pair("psi", profile, sketch)
    n_reference, n_current = profile.n, sketch.n
    if too_few(n_reference, n_current, min_samples):
        return insufficient("psi", threshold, n_reference, n_current)
    reference, current = binned_counts(profile, sketch, bins)
    statistic = psi_value(reference, current, epsilon)
    p_value = None
    if sample_size_alpha is not None:
        scale = 1.0 / n_reference + 1.0 / n_current
        dof = max(1, int(np.count_nonzero(reference + current)) - 1)
        threshold = max(threshold, scale * float(stats.chi2.ppf(1.0 - sample_size_alpha, dof)))
        p_value = float(stats.chi2.sf(statistic / scale, dof))
    return decide(
        "psi", "statistic_at_least", statistic, p_value, threshold, n_reference, n_current
    )
