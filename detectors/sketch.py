"""Window sketches: the state of one feature in one window, mergeable by addition.

A sketch is a histogram over its profile's slots (fine bins, the edges
themselves, underflow, overflow) or categories, plus a missing count. It is
O(bins) whatever the traffic, updates with array operations, and merges
exactly: counts are int64 and merging adds them, so the result never depends
on how events were split between batches, partitions or workers, or in which
order the partial sketches arrive.

Use
---
Build an empty sketch per window from the reference profile, ``update`` it with
every batch, ship or checkpoint it with ``to_bytes`` (``from_bytes`` needs the
same profile), ``merge`` partial sketches of one window, then hand
``(profile, sketch)`` to the drift tests of :mod:`detectors.registry`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors import codec
from detectors.errors import DetectorError, check_int
from detectors.profile import CategoricalProfile, NumericProfile
from detectors.values import (
    CategoryValues,
    NumericValues,
    category_counts,
    numeric_values,
    object_array,
)
from schemas.vocabulary import FeatureKind


def _same_profile(mine: str, theirs: str, what: str) -> None:
    if mine != theirs:
        raise DetectorError(
            f"{what}: built on another reference profile (fingerprint {theirs}, expected {mine})"
        )


class NumericSketch:
    """Counts of one window's values in the slots of a :class:`NumericProfile`.

    Parameters
    ----------
    profile
        The reference profile whose bins are counted.
    counts
        Count per slot (``2K + 1``); zeros when omitted.
    missing
        Missing values seen (None, NaN, ±inf).
    minimum, maximum
        Smallest and largest finite value seen (``inf`` / ``-inf`` when none):
        they place underflow and overflow mass for the Wasserstein distance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> profile = NumericProfile.build(rng.normal(size=1_000), bins=32)
    >>> sketch = NumericSketch.empty(profile).update([0.1, -9.0, None, 12.0])
    >>> sketch.n, sketch.missing, sketch.underflow, sketch.overflow
    (3, 1, 1, 1)
    >>> both = sketch.merge(NumericSketch.empty(profile).update([0.2]))
    >>> both.n, NumericSketch.from_bytes(both.to_bytes(), profile) == both
    (4, True)
    """

    __slots__ = ("_maximum", "_minimum", "counts", "missing", "profile")

    def __init__(
        self,
        profile: NumericProfile,
        counts: ArrayLike | None = None,
        missing: int = 0,
        minimum: float = np.inf,
        maximum: float = -np.inf,
    ) -> None:
        self.profile = profile
        slots = profile.counts.size
        if counts is None:
            self.counts: NDArray[np.int64] = np.zeros(slots, dtype=np.int64)
        else:
            self.counts = np.array(counts, dtype=np.int64, copy=True).reshape(-1)
            if self.counts.size != slots or np.any(self.counts < 0):
                raise DetectorError(
                    f"counts must be {slots} non-negative integers, one per slot of the profile"
                )
        self.missing = check_int("missing", missing, 0)
        self._minimum = float(minimum)
        self._maximum = float(maximum)

    @classmethod
    def empty(cls, profile: NumericProfile) -> NumericSketch:
        """A sketch with no values yet."""
        return cls(profile)

    def update(self, values: NumericValues) -> NumericSketch:
        """Count a batch of values (vectorised); returns ``self``."""
        finite, missing = numeric_values(values)
        self.missing += missing
        if finite.size:
            self.counts += self.profile.slot_index.count(finite)
            self._minimum = min(self._minimum, float(finite.min()))
            self._maximum = max(self._maximum, float(finite.max()))
        return self

    def add_binned(
        self, counts: NDArray[np.int64], missing: int, minimum: float, maximum: float
    ) -> NumericSketch:
        """Count values binned elsewhere with this profile's slot index; returns ``self``.

        ``counts`` has one entry per slot (``profile.slot_index.count`` of the
        finite values), ``minimum`` and ``maximum`` are theirs (±inf when
        there are none). A batch counted into several windows is binned once
        this way instead of once per window.
        """
        if counts.shape != self.counts.shape:
            raise DetectorError(
                f"counts must have {self.counts.size} slots, one per slot of the profile "
                f"(got shape {counts.shape})"
            )
        self.counts += counts
        self.missing += int(missing)
        self._minimum = min(self._minimum, float(minimum))
        self._maximum = max(self._maximum, float(maximum))
        return self

    def merge(self, other: NumericSketch) -> NumericSketch:
        """A new sketch holding both windows' values (exact, order-free)."""
        if not isinstance(other, NumericSketch):
            raise DetectorError(f"other must be a NumericSketch (got {type(other).__name__})")
        _same_profile(self.profile.fingerprint, other.profile.fingerprint, "other")
        return NumericSketch(
            self.profile,
            self.counts + other.counts,
            self.missing + other.missing,
            min(self._minimum, other._minimum),
            max(self._maximum, other._maximum),
        )

    @property
    def n(self) -> int:
        """Finite values counted."""
        return int(self.counts.sum())

    @property
    def n_total(self) -> int:
        """All values seen, missing included."""
        return self.n + self.missing

    @property
    def underflow(self) -> int:
        """Values below the reference minimum."""
        return int(self.counts[0])

    @property
    def overflow(self) -> int:
        """Values above the reference maximum (0 when the profile has no edges)."""
        return int(self.counts[-1]) if self.counts.size > 1 else 0

    @property
    def minimum(self) -> float | None:
        """Smallest finite value seen, or None."""
        return self._minimum if self.n else None

    @property
    def maximum(self) -> float | None:
        """Largest finite value seen, or None."""
        return self._maximum if self.n else None

    def to_bytes(self) -> bytes:
        """Compact, exact serialisation (see :mod:`detectors.codec`)."""
        fields: dict[str, Any] = {
            "missing": self.missing,
            "minimum": self._minimum,
            "maximum": self._maximum,
        }
        return codec.encode(
            "numeric-sketch", self.profile.fingerprint, fields, {"counts": self.counts}
        )

    @classmethod
    def from_bytes(cls, data: bytes, profile: NumericProfile) -> NumericSketch:
        """Read a sketch written by :meth:`to_bytes` for the same profile."""
        _, fingerprint, fields, arrays = codec.decode(data, "numeric-sketch")
        _same_profile(profile.fingerprint, fingerprint, "data")
        return cls(
            profile,
            arrays["counts"],
            int(fields["missing"]),
            float(fields["minimum"]),
            float(fields["maximum"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericSketch):
            return NotImplemented
        return (
            self.profile.fingerprint == other.profile.fingerprint
            and np.array_equal(self.counts, other.counts)
            and self.missing == other.missing
            and self.minimum == other.minimum
            and self.maximum == other.maximum
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"NumericSketch(n={self.n}, missing={self.missing}, underflow={self.underflow}, "
            f"overflow={self.overflow}, profile={self.profile.fingerprint})"
        )


class CategoricalSketch:
    """Counts of one window's values per category of a :class:`CategoricalProfile`.

    Values that are not among the profile's categories are counted in
    ``unseen``; the drift tests compare that bucket with the profile's
    ``other`` bucket (see :class:`~detectors.profile.CategoricalProfile`).

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a", "b", "a"])
    >>> sketch = CategoricalSketch.empty(profile).update(["a", "z", None, "a"])
    >>> sketch.counts.tolist(), sketch.unseen, sketch.missing
    ([2, 0], 1, 1)
    >>> CategoricalSketch.from_bytes(sketch.to_bytes(), profile) == sketch
    True
    """

    __slots__ = ("counts", "missing", "profile", "unseen")

    def __init__(
        self,
        profile: CategoricalProfile,
        counts: ArrayLike | None = None,
        unseen: int = 0,
        missing: int = 0,
    ) -> None:
        self.profile = profile
        size = len(profile.categories)
        if counts is None:
            self.counts: NDArray[np.int64] = np.zeros(size, dtype=np.int64)
        else:
            self.counts = np.array(counts, dtype=np.int64, copy=True).reshape(-1)
            if self.counts.size != size or np.any(self.counts < 0):
                raise DetectorError(
                    f"counts must be {size} non-negative integers, one per category"
                )
        self.unseen = check_int("unseen", unseen, 0)
        self.missing = check_int("missing", missing, 0)

    @classmethod
    def empty(cls, profile: CategoricalProfile) -> CategoricalSketch:
        """A sketch with no values yet."""
        return cls(profile)

    def update(self, values: CategoryValues) -> CategoricalSketch:
        """Count a batch of values (one C-level pass); returns ``self``."""
        counts, missing = category_counts(object_array(values))
        self.missing += missing
        index = self.profile.index
        for key, count in counts.items():
            position = index.get(key)
            if position is None:
                self.unseen += count
            else:
                self.counts[position] += count
        return self

    def merge(self, other: CategoricalSketch) -> CategoricalSketch:
        """A new sketch holding both windows' values (exact, order-free)."""
        if not isinstance(other, CategoricalSketch):
            raise DetectorError(f"other must be a CategoricalSketch (got {type(other).__name__})")
        _same_profile(self.profile.fingerprint, other.profile.fingerprint, "other")
        return CategoricalSketch(
            self.profile,
            self.counts + other.counts,
            self.unseen + other.unseen,
            self.missing + other.missing,
        )

    @property
    def n(self) -> int:
        """Non-missing values counted (unseen included)."""
        return int(self.counts.sum()) + self.unseen

    @property
    def n_total(self) -> int:
        """All values seen, missing included."""
        return self.n + self.missing

    def to_bytes(self) -> bytes:
        """Compact, exact serialisation (see :mod:`detectors.codec`)."""
        fields = {"unseen": self.unseen, "missing": self.missing}
        return codec.encode(
            "categorical-sketch", self.profile.fingerprint, fields, {"counts": self.counts}
        )

    @classmethod
    def from_bytes(cls, data: bytes, profile: CategoricalProfile) -> CategoricalSketch:
        """Read a sketch written by :meth:`to_bytes` for the same profile."""
        _, fingerprint, fields, arrays = codec.decode(data, "categorical-sketch")
        _same_profile(profile.fingerprint, fingerprint, "data")
        return cls(profile, arrays["counts"], int(fields["unseen"]), int(fields["missing"]))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalSketch):
            return NotImplemented
        return (
            self.profile.fingerprint == other.profile.fingerprint
            and np.array_equal(self.counts, other.counts)
            and (self.unseen, self.missing) == (other.unseen, other.missing)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"CategoricalSketch(n={self.n}, unseen={self.unseen}, missing={self.missing}, "
            f"profile={self.profile.fingerprint})"
        )


Sketch = NumericSketch | CategoricalSketch
"""A window sketch of either kind."""


def empty_sketch(profile: NumericProfile | CategoricalProfile) -> Sketch:
    """An empty sketch of the right kind for a profile.

    Examples
    --------
    >>> empty_sketch(CategoricalProfile.build(["a"])).n
    0
    """
    if isinstance(profile, NumericProfile):
        return NumericSketch(profile)
    if isinstance(profile, CategoricalProfile):
        return CategoricalSketch(profile)
    raise DetectorError(f"profile must be a NumericProfile or CategoricalProfile (got {profile!r})")


def check_pair(
    method: str, profile: object, sketch: object, kind: FeatureKind | None = None
) -> None:
    """Check that a drift test got a profile (of ``kind``, when given) and a sketch of it.

    Raises
    ------
    DetectorError
        Naming ``profile`` or ``sketch`` and what was expected.

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a"])
    >>> check_pair("ks", profile, CategoricalSketch(profile), kind="numeric")
    Traceback (most recent call last):
    ...
    detectors.errors.DetectorError: ks is defined for numeric features: profile must be a ...
    """
    profile_types: dict[str, type[NumericProfile] | type[CategoricalProfile]] = {
        "numeric": NumericProfile,
        "categorical": CategoricalProfile,
    }
    if kind is not None and not isinstance(profile, profile_types[kind]):
        raise DetectorError(
            f"{method} is defined for {kind} features: profile must be a "
            f"{profile_types[kind].__name__} (got {type(profile).__name__})"
        )
    if isinstance(profile, NumericProfile):
        expected: type[NumericSketch] | type[CategoricalSketch] = NumericSketch
    elif isinstance(profile, CategoricalProfile):
        expected = CategoricalSketch
    else:
        raise DetectorError(
            f"{method}: profile must be a NumericProfile or CategoricalProfile "
            f"(got {type(profile).__name__})"
        )
    if not isinstance(sketch, expected):
        raise DetectorError(
            f"{method}: sketch must be a {expected.__name__} for a {type(profile).__name__} "
            f"(got {type(sketch).__name__})"
        )
    if sketch.profile.fingerprint != profile.fingerprint:
        raise DetectorError(f"{method}: sketch was built on another reference profile")
