"""Coarse bins merged from a profile's fine slots (for PSI and Jensen–Shannon).

PSI and Jensen–Shannon on thousands of fine bins mostly measure sampling
noise, so they use a handful of reference-quantile bins (10 by default). The
boundaries are fine edges, chosen where the reference CDF first reaches
``q / bins``; boundaries that coincide collapse, so a column with few distinct
values gets fewer coarse bins. Coarse bin ``b`` holds the values in
``(c[b-1], c[b]]`` with ``c[-1] = -inf`` and ``c[last] = +inf``: values below or
above the reference range fall into the outer bins, where a shift shows up.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.errors import check_int
from detectors.profile import NumericProfile

DEFAULT_COARSE_BINS = 10


def coarse_boundaries(profile: NumericProfile, bins: int = DEFAULT_COARSE_BINS) -> NDArray[np.intp]:
    """Indices ``j`` of the fine edges that bound the coarse bins (``x <= e[j]`` goes left).

    Parameters
    ----------
    profile
        The reference profile.
    bins
        Wanted number of coarse bins, 2 to 1,000.

    Examples
    --------
    >>> coarse_boundaries(NumericProfile.build(np.arange(100.0)), 4).tolist()
    [24, 49, 74]
    """
    bins = check_int("bins", bins, 2, 1000)
    k = profile.edges.size
    n = profile.n
    if k < 2 or n == 0:
        return np.empty(0, dtype=np.intp)
    at_or_below = np.cumsum(profile.counts)[1::2]
    targets = n * np.arange(1, bins, dtype=np.int64)
    chosen = np.unique(np.searchsorted(at_or_below * bins, targets, side="left"))
    return chosen[chosen < k - 1].astype(np.intp)


def coarse_edges(profile: NumericProfile, bins: int = DEFAULT_COARSE_BINS) -> NDArray[np.float64]:
    """The coarse boundaries as values: bin ``b`` is ``(edges[b-1], edges[b]]``.

    Examples
    --------
    >>> profile = NumericProfile.build(np.arange(1000.0))
    >>> coarse_edges(profile, 4).tolist()
    [249.0, 499.0, 749.0]
    """
    return profile.edges[coarse_boundaries(profile, bins)]


def coarse_counts(counts: NDArray[np.int64], boundaries: NDArray[np.intp]) -> NDArray[np.int64]:
    """Merge fine slot counts into the coarse bins given by :func:`coarse_boundaries`.

    Examples
    --------
    >>> coarse_counts(np.array([1, 2, 3, 4, 5, 6, 7]), np.array([1])).tolist()
    [10, 18]
    """
    cumulative = np.cumsum(counts)
    at_boundaries = cumulative[2 * boundaries + 1]
    return np.diff(np.concatenate([[0], at_boundaries, [cumulative[-1]]])).astype(np.int64)
