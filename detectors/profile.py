"""Reference profiles: what a model version's training data looked like, compactly.

A :class:`NumericProfile` keeps fine quantile edges of the reference column and
the reference count in every slot between and on them (the slot layout of
:mod:`detectors.binning`); a :class:`CategoricalProfile` keeps the most frequent
categories with their counts and lumps the rest into an ``other`` bucket. A
:class:`ReferenceProfile` gathers them for one model version, with the
prediction and score profiles and the baseline performance, and round-trips
exactly through JSON.

Edges are actual reference values (``inverted_cdf``-style order statistics), so
ties collapse to one edge and a column with at most ``bins + 1`` distinct values
keeps all of them: for such discrete columns every slot is a single value and
the sketched KS statistic is exact.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.binning import SlotIndex
from detectors.errors import DetectorError, check_int
from detectors.values import (
    CategoryValues,
    NumericValues,
    category_counts,
    numeric_values,
    object_array,
)
from schemas.vocabulary import FeatureKind

DEFAULT_BINS = 2048
MAX_BINS = 65536
DEFAULT_MAX_CATEGORIES = 1000
FORMAT = "driftline.reference-profile"
FORMAT_VERSION = 1


def _frozen(array: ArrayLike, dtype: type[np.generic]) -> NDArray[Any]:
    result = np.array(array, dtype=dtype, copy=True).reshape(-1)
    result.flags.writeable = False
    return result


def _b64_floats(values: NDArray[np.float64]) -> str:
    return base64.b64encode(values.astype("<f8").tobytes()).decode("ascii")


def _floats_b64(text: str) -> NDArray[np.float64]:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % 8:
        raise ValueError("edges: length is not a multiple of 8 bytes")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64)


def _moments(values: NDArray[np.float64], low: float, high: float) -> tuple[float, float]:
    """Mean and population standard deviation, without overflow for values near 1e308."""
    if low == high:
        return low, 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(np.mean(values)), float(np.std(values))
    if np.isfinite(mean) and np.isfinite(std):
        return mean, std
    scale = max(abs(low), abs(high))
    scaled = values / scale
    return scale * float(np.mean(scaled)), scale * float(np.std(scaled))


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """The reference distribution of one numeric column.

    Parameters
    ----------
    edges
        Strictly increasing finite reference values (``K`` of them, at most
        ``bins + 1``).
    counts
        Reference count per slot, ``2K + 1`` of them (underflow and overflow
        are 0 for a reference).
    missing
        Reference values that were missing (None, NaN, ±inf).
    mean, std
        Mean and population standard deviation of the finite reference values.

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> profile = NumericProfile.build(rng.normal(size=10_000), bins=256)
    >>> profile.n, profile.edges.size, profile.missing
    (10000, 257, 0)
    >>> round(profile.ks_error_bound, 4)
    0.0039
    >>> NumericProfile.build([1.0, 1.0, 2.0, None]).counts.tolist()
    [0, 2, 0, 1, 0]
    """

    edges: NDArray[np.float64]
    counts: NDArray[np.int64]
    missing: int = 0
    mean: float = 0.0
    std: float = 0.0
    kind: ClassVar[FeatureKind] = "numeric"

    def __post_init__(self) -> None:
        edges = _frozen(self.edges, np.float64)
        counts = _frozen(self.counts, np.int64)
        if edges.size and not (np.all(np.isfinite(edges)) and np.all(edges[1:] > edges[:-1])):
            raise DetectorError("edges must be finite and strictly increasing")
        if edges.size > MAX_BINS + 1:
            raise DetectorError(f"edges must be at most {MAX_BINS + 1} (got {edges.size})")
        if counts.size != 2 * edges.size + 1:
            raise DetectorError(
                f"counts must have 2 * len(edges) + 1 = {2 * edges.size + 1} slots "
                f"(got {counts.size})"
            )
        if np.any(counts < 0):
            raise DetectorError("counts must not be negative")
        check_int("missing", self.missing, 0)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "missing", int(self.missing))
        object.__setattr__(self, "mean", float(self.mean))
        object.__setattr__(self, "std", float(self.std))

    @classmethod
    def build(cls, values: NumericValues, *, bins: int = DEFAULT_BINS) -> NumericProfile:
        """Profile a reference column.

        Parameters
        ----------
        values
            The column; None, NaN and ±inf count as missing.
        bins
            Number of fine quantile bins, 1 to 65,536 (default 2,048). Ties
            collapse, so a profile may have fewer.
        """
        bins = check_int("bins", bins, 1, MAX_BINS)
        finite, missing = numeric_values(values)
        ordered = np.sort(finite)
        n = ordered.size
        if n == 0:
            return cls(np.empty(0), np.zeros(1, dtype=np.int64), missing, 0.0, 0.0)
        new_value = np.empty(n, dtype=bool)
        new_value[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=new_value[1:])
        if np.count_nonzero(new_value) <= bins + 1:
            edges = ordered[new_value]
        else:
            positions = (np.arange(bins + 1, dtype=np.int64) * (n - 1) + bins // 2) // bins
            edges = np.unique(ordered[positions])
        below = np.searchsorted(ordered, edges, side="left")
        through = np.searchsorted(ordered, edges, side="right")
        counts = np.zeros(2 * edges.size + 1, dtype=np.int64)
        counts[1::2] = through - below
        counts[2:-1:2] = below[1:] - through[:-1]
        mean, std = _moments(finite, float(edges[0]), float(edges[-1]))
        return cls(edges, counts, missing, mean, std)

    @property
    def n(self) -> int:
        """Number of finite reference values."""
        return int(self.counts.sum())

    @property
    def minimum(self) -> float | None:
        """Smallest reference value (None when there is none)."""
        return float(self.edges[0]) if self.edges.size else None

    @property
    def maximum(self) -> float | None:
        """Largest reference value (None when there is none)."""
        return float(self.edges[-1]) if self.edges.size else None

    @property
    def ks_error_bound(self) -> float:
        """Largest reference mass strictly inside one bin: the KS sketch error bound."""
        n = self.n
        if n == 0 or self.edges.size < 2:
            return 0.0
        return float(self.counts[2:-1:2].max()) / n

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the edges: sketches of this profile carry it."""
        digest = hashlib.sha256(b"numeric\x00" + self.edges.astype("<f8").tobytes())
        return digest.hexdigest()[:16]

    @cached_property
    def slot_index(self) -> SlotIndex:
        """The vectorised lookup that sketches use (built once, on first use)."""
        return SlotIndex(self.edges)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; edges as base64 of little-endian float64 (exact)."""
        return {
            "kind": "numeric",
            "edges": _b64_floats(self.edges),
            "counts": self.counts.tolist(),
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        """Inverse of :meth:`to_dict`."""
        return cls(
            _floats_b64(str(data["edges"])),
            np.array(data["counts"], dtype=np.int64),
            int(data["missing"]),
            float(data["mean"]),
            float(data["std"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericProfile):
            return NotImplemented
        return (
            np.array_equal(self.edges, other.edges)
            and np.array_equal(self.counts, other.counts)
            and (self.missing, self.mean, self.std) == (other.missing, other.mean, other.std)
        )

    __hash__ = object.__hash__


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """The reference distribution of one categorical column.

    Parameters
    ----------
    categories
        The most frequent categories (canonical keys, see
        :mod:`detectors.values`), most frequent first.
    counts
        Reference count of each category.
    other
        Reference values in categories beyond ``max_categories``.
    missing
        Missing reference values.

    Notes
    -----
    A window sketch cannot tell a rare reference category (in ``other``) from a
    category never seen before: both land in the sketch's ``unseen`` count. The
    drift tests therefore compare ``other`` with ``unseen`` as one bucket, and
    :attr:`other_share` is the baseline of the unseen-category rate.

    Examples
    --------
    >>> profile = CategoricalProfile.build(["a", "b", "a", "c", None], max_categories=2)
    >>> profile.categories, profile.counts.tolist(), profile.other, profile.missing
    (('a', 'b'), [2, 1], 1, 1)
    """

    categories: tuple[str, ...]
    counts: NDArray[np.int64]
    other: int = 0
    missing: int = 0
    kind: ClassVar[FeatureKind] = "categorical"

    def __post_init__(self) -> None:
        categories = tuple(str(category) for category in self.categories)
        counts = _frozen(self.counts, np.int64)
        if len(set(categories)) != len(categories):
            raise DetectorError("categories must be distinct")
        if counts.size != len(categories):
            raise DetectorError(
                f"counts must have one entry per category ({len(categories)}, got {counts.size})"
            )
        if np.any(counts < 0):
            raise DetectorError("counts must not be negative")
        check_int("other", self.other, 0)
        check_int("missing", self.missing, 0)
        object.__setattr__(self, "categories", categories)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "other", int(self.other))
        object.__setattr__(self, "missing", int(self.missing))

    @classmethod
    def build(
        cls, values: CategoryValues, *, max_categories: int = DEFAULT_MAX_CATEGORIES
    ) -> CategoricalProfile:
        """Profile a reference column.

        Parameters
        ----------
        values
            The column (str, bool, numbers; None and NaN are missing).
        max_categories
            Categories kept by name, 1 to 1,000,000 (default 1,000); ties in
            frequency are broken by name so the profile is deterministic.
        """
        max_categories = check_int("max_categories", max_categories, 1, 1_000_000)
        counts, missing = category_counts(object_array(values))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        kept = ranked[:max_categories]
        other = sum(count for _, count in ranked[max_categories:])
        return cls(
            tuple(name for name, _ in kept),
            np.array([count for _, count in kept], dtype=np.int64),
            other,
            missing,
        )

    @property
    def n(self) -> int:
        """Number of non-missing reference values (including ``other``)."""
        return int(self.counts.sum()) + self.other

    @property
    def other_share(self) -> float:
        """Share of non-missing reference values in the ``other`` bucket."""
        n = self.n
        return self.other / n if n else 0.0

    @cached_property
    def index(self) -> dict[str, int]:
        """Category → position in :attr:`counts`."""
        return {category: position for position, category in enumerate(self.categories)}

    @cached_property
    def fingerprint(self) -> str:
        """Short hash of the category list: sketches of this profile carry it."""
        text = json.dumps(["categorical", *self.categories], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "kind": "categorical",
            "categories": list(self.categories),
            "counts": self.counts.tolist(),
            "other": self.other,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(str(category) for category in data["categories"]),
            np.array(data["counts"], dtype=np.int64),
            int(data["other"]),
            int(data["missing"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoricalProfile):
            return NotImplemented
        return (
            self.categories == other.categories
            and np.array_equal(self.counts, other.counts)
            and (self.other, self.missing) == (other.other, other.missing)
        )

    __hash__ = object.__hash__


Profile = NumericProfile | CategoricalProfile
"""A column profile of either kind."""


def build_profile(
    values: CategoryValues,
    kind: FeatureKind,
    *,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
) -> Profile:
    """Profile a reference column of the given kind.

    Examples
    --------
    >>> build_profile(["x", "y", "x"], "categorical").categories
    ('x', 'y')
    >>> build_profile([1, 2, 3], "numeric").n
    3
    """
    if kind == "numeric":
        return NumericProfile.build(object_array(values), bins=bins)
    if kind == "categorical":
        return CategoricalProfile.build(values, max_categories=max_categories)
    raise DetectorError(f"kind must be 'numeric' or 'categorical' (got {kind!r})")


def _profile_from_dict(data: Mapping[str, Any]) -> Profile:
    kind = data.get("kind")
    if kind == "numeric":
        return NumericProfile.from_dict(data)
    if kind == "categorical":
        return CategoricalProfile.from_dict(data)
    raise ValueError(f"unknown profile kind {kind!r}")


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything the stream compares one model version's traffic against.

    Parameters
    ----------
    model_id, model_version
        The model version the reference describes.
    features
        Feature name → profile.
    prediction
        Profile of the model's prediction (numeric for regression, categorical
        for classes), if known.
    scores
        Class → profile of that class's score, if the model emits scores.
    baseline
        Metric name → value measured on the reference (e.g. validation AUC).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> reference = ReferenceProfile(
    ...     "churn", "3",
    ...     features={"age": NumericProfile.build(rng.normal(40, 9, 500), bins=64),
    ...               "plan": CategoricalProfile.build(["basic", "pro", "basic"])},
    ...     baseline={"roc_auc": 0.91},
    ... )
    >>> ReferenceProfile.from_json(reference.to_json()) == reference
    True
    """

    model_id: str
    model_version: str
    features: Mapping[str, Profile]
    prediction: Profile | None = None
    scores: Mapping[str, NumericProfile] = field(default_factory=dict)
    baseline: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", dict(self.features))
        object.__setattr__(self, "scores", dict(self.scores))
        baseline = {str(name): float(value) for name, value in self.baseline.items()}
        for name, value in baseline.items():
            if not np.isfinite(value):
                raise DetectorError(f"baseline[{name!r}] must be a finite number (got {value})")
        object.__setattr__(self, "baseline", baseline)

    def to_json(self) -> str:
        """Compact JSON; :meth:`from_json` gives back an equal profile."""
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "features": {name: profile.to_dict() for name, profile in self.features.items()},
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
            "scores": {name: profile.to_dict() for name, profile in self.scores.items()},
            "baseline": dict(self.baseline),
        }
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ReferenceProfile:
        """Load what :meth:`to_json` wrote.

        Raises
        ------
        DetectorError
            When the text is not a driftline reference profile, with the reason.
        """
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT!r}")
            if document.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {document.get('version')!r} is not {FORMAT_VERSION}")
            features = {
                str(name): _profile_from_dict(data) for name, data in document["features"].items()
            }
            prediction = document.get("prediction")
            scores: dict[str, NumericProfile] = {}
            for name, data in document.get("scores", {}).items():
                score_profile = _profile_from_dict(data)
                if not isinstance(score_profile, NumericProfile):
                    raise ValueError(f"scores[{name!r}] must be a numeric profile")
                scores[str(name)] = score_profile
            return cls(
                str(document["model_id"]),
                str(document["model_version"]),
                features,
                None if prediction is None else _profile_from_dict(prediction),
                scores,
                {str(k): float(v) for k, v in document.get("baseline", {}).items()},
            )
        except DetectorError as exc:
            raise DetectorError(f"reference profile: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DetectorError(f"reference profile: not readable ({exc})") from None
