"""Two-sample Kolmogorov–Smirnov test from a window sketch.

Notes
-----
The statistic is ``D = max |F_ref(x) - F_cur(x)|`` evaluated at every point the
sketch can evaluate exactly: just below and at every fine edge (the cumulative
slot counts). These points are values where the exact empirical CDFs take the
same values, so ``D_sketch <= D_exact``. Between two edges ``e[j-1] < x < e[j]``
the reference CDF rises by at most ``r_j``, the reference mass strictly inside
that bin, while the current CDF is monotone, so::

    D_exact - D_sketch <= max_j r_j = profile.ks_error_bound  (< 1/B for B bins)

For a column with at most ``B + 1`` distinct reference values every bin is
empty inside and the statistic is exact.

The p-value is the one ``scipy.stats.ks_2samp(method="asymp")`` gives for the
same ``D``: the distribution of the one-sample statistic
(``scipy.stats.kstwo``) with ``N = round(n m / (n + m))``. For large ``N`` and
small p-values scipy evaluates that distribution with an exact series whose
cost grows with ``N`` (about 0.5 s at ``N = 500,000``); there, when
``N >= 20,000`` and ``N D² >= 2.2``, the Kolmogorov limit is used with the
finite-sample shift ``z + 1/(6√N) + (z - 1)/(4N)``, ``z = √N D`` (corrections
of this kind are reviewed by Vrbik, 2020). Checked against ``kstwo`` on a grid
of ``N`` and ``z`` its absolute error stays below 5e-7 and shrinks like 1/N; the
unit tests check it again.

References
----------
Vrbik, J. (2020). Deriving CDF of Kolmogorov-Smirnov test statistic. *Applied
Mathematics*, 11, 227–246.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

from detectors.errors import check_float, check_int
from detectors.profile import NumericProfile
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult, decide, insufficient, too_few
from detectors.sketch import NumericSketch, check_pair

DEFAULT_THRESHOLD = 0.05
"""Significance level: drift when ``p_value <= 0.05``."""

_LIMIT_FROM_N = 20_000
_SLOW_REGION = 2.2


def ks_statistic(reference_counts: NDArray[np.int64], current_counts: NDArray[np.int64]) -> float:
    """Largest CDF difference over aligned slot counts (both non-empty).

    Examples
    --------
    >>> ks_statistic(np.array([0, 5, 0, 5, 0]), np.array([0, 0, 0, 10, 0]))
    0.5
    """
    reference = np.cumsum(reference_counts) / reference_counts.sum()
    current = np.cumsum(current_counts) / current_counts.sum()
    return float(np.max(np.abs(reference - current)))


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided asymptotic p-value of a two-sample KS statistic, as scipy computes it.

    Parameters
    ----------
    statistic
        ``D`` in [0, 1].
    n_reference, n_current
        Sample sizes (>= 1).

    Examples
    --------
    >>> from scipy import stats
    >>> rng = np.random.default_rng(3)
    >>> a, b = rng.normal(size=300), rng.normal(0.2, 1, size=200)
    >>> exact = stats.ks_2samp(a, b, method="asymp")
    >>> bool(abs(ks_p_value(exact.statistic, 300, 200) - exact.pvalue) < 1e-12)
    True
    """
    statistic = check_float("statistic", statistic, 0.0, 1.0)
    n_reference = check_int("n_reference", n_reference, 1)
    n_current = check_int("n_current", n_current, 1)
    if n_reference == n_current == 1:
        # One value a side: D is 1 whenever they differ, so D >= d has probability 1
        # (scipy's exact p-value); the effective size rounds to 0, where kstwo is undefined.
        return 1.0
    larger, smaller = sorted((float(n_reference), float(n_current)), reverse=True)
    # np.round as scipy does (half to even).
    n = float(np.round(larger * smaller / (larger + smaller)))
    if n >= _LIMIT_FROM_N and n * statistic * statistic >= _SLOW_REGION:
        root = math.sqrt(n)
        z = root * statistic
        p_value = float(special.kolmogorov(z + 1.0 / (6.0 * root) + (z - 1.0) / (4.0 * n)))
    else:
        p_value = float(stats.kstwo.sf(statistic, n))
    return min(1.0, max(0.0, p_value))


def ks(
    profile: NumericProfile,
    sketch: NumericSketch,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> DriftResult:
    """Kolmogorov–Smirnov drift test of a window against the reference.

    Parameters
    ----------
    profile
        Reference profile of the feature.
    sketch
        The window's sketch on that profile.
    threshold
        Significance level in (0, 1): drift when ``p_value <= threshold``.
    min_samples
        Fewest values on each side (>= 1) for a result.

    Returns
    -------
    DriftResult
        ``statistic`` is the sketched ``D`` (within ``profile.ks_error_bound``
        below the exact one), ``p_value`` from scipy's distribution.

    Examples
    --------
    >>> rng = np.random.default_rng(42)
    >>> profile = NumericProfile.build(rng.normal(size=20_000))
    >>> same = NumericSketch.empty(profile).update(rng.normal(size=5_000))
    >>> ks(profile, same).drifted
    False
    >>> shifted = NumericSketch.empty(profile).update(rng.normal(0.1, 1, size=5_000))
    >>> result = ks(profile, shifted)
    >>> result.drifted, round(result.statistic, 3)
    (True, 0.049)
    """
    threshold = check_float("threshold", threshold, 0.0, 1.0, low_open=True, high_open=True)
    check_pair("ks", profile, sketch, kind="numeric")
    n_reference, n_current = profile.n, sketch.n
    if too_few(n_reference, n_current, min_samples):
        return insufficient("ks", threshold, n_reference, n_current)
    statistic = ks_statistic(profile.counts, sketch.counts)
    p_value = ks_p_value(statistic, n_reference, n_current)
    return decide("ks", "p_value_at_most", statistic, p_value, threshold, n_reference, n_current)
