"""Data quality of one feature in one window, read from its sketch.

All rates are shares of the window's events for that feature (missing values
included), so they add up to at most 1 and are comparable across features; an
empty window has rates of 0 with ``n_total`` 0.

- ``missing_rate``: None, NaN or ±inf (numeric), None or NaN (categorical);
- ``out_of_range_rate`` (numeric): below the reference minimum or above the
  reference maximum;
- ``unseen_category_rate`` (categorical): not among the profile's categories.
  When the reference itself had more categories than the profile keeps, rare
  reference categories count here too; ``reference_other_share`` is then the
  baseline to compare with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from detectors.errors import DetectorError
from detectors.sketch import CategoricalSketch, NumericSketch


@dataclass(frozen=True)
class DataQualityResult:
    """Data-quality rates of one feature in one window (None = not applicable).

    Examples
    --------
    >>> from detectors.profile import NumericProfile
    >>> profile = NumericProfile.build([0.0, 1.0, 2.0])
    >>> result = data_quality(NumericSketch.empty(profile).update([1.0, 5.0, None, 0.5]))
    >>> result.missing_rate, result.out_of_range_rate, result.unseen_category_rate
    (0.25, 0.25, None)
    """

    n_total: int
    missing_rate: float
    out_of_range_rate: float | None = None
    unseen_category_rate: float | None = None
    reference_other_share: float | None = None

    def fields(self) -> dict[str, Any]:
        """The ``data_quality`` measurement fields (None where not applicable)."""
        data = asdict(self)
        return {
            name: data[name]
            for name in ("missing_rate", "out_of_range_rate", "unseen_category_rate")
        }


def data_quality(sketch: NumericSketch | CategoricalSketch) -> DataQualityResult:
    """Missing, out-of-range and unseen-category rates of a window's sketch.

    Examples
    --------
    >>> from detectors.profile import CategoricalProfile
    >>> profile = CategoricalProfile.build(["a", "b"])
    >>> data_quality(CategoricalSketch.empty(profile).update(["a", "c", "c", None])).fields()
    {'missing_rate': 0.25, 'out_of_range_rate': None, 'unseen_category_rate': 0.5}
    >>> data_quality(CategoricalSketch.empty(profile)).missing_rate
    0.0
    """
    if not isinstance(sketch, NumericSketch | CategoricalSketch):
        raise DetectorError(
            f"sketch must be a NumericSketch or CategoricalSketch (got {type(sketch).__name__})"
        )
    total = sketch.n_total

    def share(count: int) -> float:
        return count / total if total else 0.0

    if isinstance(sketch, NumericSketch):
        return DataQualityResult(
            n_total=total,
            missing_rate=share(sketch.missing),
            out_of_range_rate=share(sketch.underflow + sketch.overflow),
        )
    return DataQualityResult(
        n_total=total,
        missing_rate=share(sketch.missing),
        unseen_category_rate=share(sketch.unseen),
        reference_other_share=sketch.profile.other_share,
    )
