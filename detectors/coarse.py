"""Coarse bins merged from a profile's fine slots (for PSI and Jensen–Shannon).

PSI and Jensen–Shannon on thousands of fine bins mostly measure sampling
noise, so they use a handful of reference-quantile bins (10 by default). The
boundaries are fine edges, chosen where the reference CDF first reaches
``q / bins``; boundaries that coincide collapse, so a column with few distinct
values gets fewer coarse bins. Two more bins hold the values below the
reference's minimum and above its maximum, where the reference has no mass:
a window inside the reference range adds nothing there (both shares are the
same floor), and a window that leaves it shows up even when the reference is
constant or binary, whose quantile bins would otherwise take the new values
in with the old ones.

Boundaries are fine *slots* (see :class:`~detectors.profile.NumericProfile`):
coarse bin ``b`` holds slots ``s[b-1] + 1 … s[b]``, with ``s[-1] = -1`` and the
last bin running to the last slot.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.errors import check_int
from detectors.profile import NumericProfile

DEFAULT_COARSE_BINS = 10


def coarse_boundaries(profile: NumericProfile, bins: int = DEFAULT_COARSE_BINS) -> NDArray[np.intp]:
    """The last fine slot of every coarse bin but the last one.

    Parameters
    ----------
    profile
        The reference profile.
    bins
        Wanted number of quantile bins inside the reference range, 2 to 1,000
        (the two outer bins come on top).

    Examples
    --------
    >>> coarse_boundaries(NumericProfile.build(np.arange(100.0)), 4).tolist()
    [0, 49, 99, 149, 199]
    >>> coarse_boundaries(NumericProfile.build([3.0] * 10)).tolist()  # below, at, above 3
    [0, 1]
    """
    bins = check_int("bins", bins, 2, 1000)
    k = profile.edges.size
    n = profile.n
    if k == 0 or n == 0:
        return np.empty(0, dtype=np.intp)
    at_or_below = np.cumsum(profile.counts)[1::2]
    targets = n * np.arange(1, bins, dtype=np.int64)
    chosen = np.unique(np.searchsorted(at_or_below * bins, targets, side="left"))
    inside = 2 * chosen[chosen < k - 1] + 1
    # Slot 0 is below the minimum, the last slot (2k) above the maximum.
    return np.unique(np.concatenate(([0], inside, [2 * k - 1]))).astype(np.intp)


def coarse_edges(profile: NumericProfile, bins: int = DEFAULT_COARSE_BINS) -> NDArray[np.float64]:
    """The coarse boundaries as values: ``x`` is in bin ``b`` when ``edges[b-1] < x <= edges[b]``.

    The first edge is the float just below the reference's minimum, the last
    one its maximum.

    Examples
    --------
    >>> profile = NumericProfile.build(np.arange(1000.0))
    >>> coarse_edges(profile, 4).tolist()[1:]
    [249.0, 499.0, 749.0, 999.0]
    >>> float(coarse_edges(profile, 4)[0]) == float(np.nextafter(0.0, -1.0))
    True
    """
    slots = coarse_boundaries(profile, bins)
    edges: NDArray[np.float64] = profile.edges[np.maximum(slots - 1, 0) // 2].astype(np.float64)
    if slots.size:
        # Slot 0 ends just below the first edge; an odd slot 2j + 1 ends at edge j.
        edges[slots == 0] = np.nextafter(profile.edges[0], -np.inf)
    return edges


def coarse_counts(counts: NDArray[np.int64], boundaries: NDArray[np.intp]) -> NDArray[np.int64]:
    """Merge fine slot counts into the coarse bins given by :func:`coarse_boundaries`.

    Examples
    --------
    >>> coarse_counts(np.array([1, 2, 3, 4, 5, 6, 7]), np.array([0, 3])).tolist()
    [1, 9, 18]
    """
    cumulative = np.cumsum(counts)
    at_boundaries = cumulative[boundaries]
    return np.diff(np.concatenate([[0], at_boundaries, [cumulative[-1]]])).astype(np.int64)
