"""Reference and window counts over the same bins, for the distribution-based tests.

Numeric features use the coarse bins of :mod:`detectors.coarse`; categorical
features their categories plus one last bucket that pairs the reference's
``other`` with the window's ``unseen`` values (see
:class:`~detectors.profile.CategoricalProfile`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from detectors.coarse import coarse_boundaries, coarse_counts
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.sketch import CategoricalSketch, NumericSketch


def binned_counts(
    profile: NumericProfile | CategoricalProfile,
    sketch: NumericSketch | CategoricalSketch,
    bins: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Reference and window counts per bin (``bins`` applies to numeric features).

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a", "a", "b", "c"], max_categories=2)
    >>> sketch = CategoricalSketch.empty(profile).update(["a", "z", "z"])
    >>> [counts.tolist() for counts in binned_counts(profile, sketch, 10)]
    [[2, 1, 1], [1, 0, 2]]
    """
    if isinstance(profile, NumericProfile) and isinstance(sketch, NumericSketch):
        boundaries = coarse_boundaries(profile, bins)
        return coarse_counts(profile.counts, boundaries), coarse_counts(sketch.counts, boundaries)
    if isinstance(profile, CategoricalProfile) and isinstance(sketch, CategoricalSketch):
        reference = np.append(profile.counts, profile.other).astype(np.int64)
        current = np.append(sketch.counts, sketch.unseen).astype(np.int64)
        return reference, current
    raise TypeError("profile and sketch must be of the same kind")
