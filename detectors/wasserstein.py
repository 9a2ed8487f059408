"""Wasserstein (earth mover's) distance on the profile's bin grid.

Notes
-----
Each slot's mass sits at one point: an edge slot at its edge, an inner slot at
the midpoint of its bin, underflow halfway between the window's minimum and the
reference minimum, overflow halfway between the reference maximum and the
window's maximum. The distance between the two weighted point sets
(``scipy.stats.wasserstein_distance``) is divided by the reference standard
deviation so one threshold (default 0.1, i.e. a tenth of a standard deviation
of mass transport) fits every feature; for a constant reference (standard
deviation 0) the distance is reported in the feature's own units.

Placing the mass of a bin at its midpoint moves it by at most half the bin's
width, in the reference and in the window alike, so the grid distance is
within the width of the widest bin that holds mass of the exact distance
(half a width for each of the two, added by the triangle inequality; quantile
bins are narrow where the data are dense). The underflow and overflow bins
run from the reference's range to the window's minimum or maximum: a window
that leaves the range entirely is measured up to that span too (0 moved to
7 everywhere reads 3.5 with a constant reference, where the exact distance
is 7), enough to be flagged but not to be read as an exact size.
"""

from __future__ import annotations

import sys

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from detectors.errors import check_float
from detectors.profile import NumericProfile
from detectors.result import DEFAULT_MIN_SAMPLES, DriftResult, decide, insufficient, too_few
from detectors.sketch import NumericSketch, check_pair

DEFAULT_THRESHOLD = 0.1


def slot_positions(profile: NumericProfile, sketch: NumericSketch) -> NDArray[np.float64]:
    """Where the mass of each slot is placed (see the module Notes).

    Examples
    --------
    >>> profile = NumericProfile.build([0.0, 1.0, 2.0])
    >>> sketch = NumericSketch.empty(profile).update([-4.0, 0.5, 10.0])
    >>> slot_positions(profile, sketch).tolist()
    [-2.0, 0.0, 0.5, 1.0, 1.5, 2.0, 6.0]
    """
    edges = profile.edges
    positions = np.empty(2 * edges.size + 1, dtype=np.float64)
    if edges.size == 0:
        positions[0] = 0.0
        return positions
    positions[1::2] = edges
    positions[2:-1:2] = edges[:-1] / 2 + edges[1:] / 2
    low = sketch.minimum if sketch.minimum is not None else float(edges[0])
    high = sketch.maximum if sketch.maximum is not None else float(edges[-1])
    positions[0] = min(low, float(edges[0])) / 2 + float(edges[0]) / 2
    positions[-1] = float(edges[-1]) / 2 + max(high, float(edges[-1])) / 2
    return positions


def wasserstein(
    profile: NumericProfile,
    sketch: NumericSketch,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> DriftResult:
    """Normalised Wasserstein distance of a window from the reference.

    Parameters
    ----------
    profile, sketch
        Reference profile and the window's sketch on it (numeric only).
    threshold
        Distance (>= 0), in reference standard deviations, at or above which
        the window has drifted (default 0.1).
    min_samples
        Fewest values on each side (>= 1) for a result.

    Examples
    --------
    >>> rng = np.random.default_rng(11)
    >>> profile = NumericProfile.build(rng.normal(10, 2, size=20_000))
    >>> shifted = NumericSketch.empty(profile).update(rng.normal(10.5, 2, size=20_000))
    >>> result = wasserstein(profile, shifted)
    >>> result.drifted, round(result.statistic, 2)
    (True, 0.25)
    """
    threshold = check_float("threshold", threshold, 0.0)
    check_pair("wasserstein", profile, sketch, kind="numeric")
    n_reference, n_current = profile.n, sketch.n
    if too_few(n_reference, n_current, min_samples):
        return insufficient("wasserstein", threshold, n_reference, n_current)
    positions = slot_positions(profile, sketch)
    # Distances are computed on positions scaled into [-1, 1] so that values near
    # the float limit cannot overflow; the result is capped at the largest float.
    extent = float(np.max(np.abs(positions))) or 1.0
    distance = float(
        stats.wasserstein_distance(
            positions / extent, positions / extent, profile.counts, sketch.counts
        )
    )
    scale = profile.std if profile.std > 0 else 1.0
    with np.errstate(over="ignore"):
        statistic = distance * (extent / scale) if distance > 0 else 0.0
    if not np.isfinite(statistic):
        statistic = sys.float_info.max
    return decide(
        "wasserstein",
        "statistic_at_least",
        statistic,
        None,
        threshold,
        n_reference,
        n_current,
    )
