"""The verdict of one rule on one key in one window, and how values are compared.

A rule compares a value with a threshold (``value op threshold`` is a breach)
and, for hysteresis, with a resolve threshold: a value counts towards
resolving a firing alert only when it is not a breach *and* the breach
comparison fails against the resolve threshold too. With ``op`` ``>``,
threshold 0.2 and resolve threshold 0.1, a value of 0.15 is neither a breach
nor resolving; 0.1 or less resolves.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal, cast

import numpy as np

from alerts.errors import AlertError
from alerts.key import AlertKey
from schemas.outputs import EvidenceValue

Comparison = Literal[">", ">=", "<", "<="]
COMPARISONS: tuple[Comparison, ...] = (">", ">=", "<", "<=")


def compare(value: float, op: Comparison, threshold: float) -> bool:
    """``value op threshold``.

    Examples
    --------
    >>> compare(0.31, ">", 0.2), compare(0.2, ">", 0.2), compare(0.2, ">=", 0.2)
    (True, False, True)
    """
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    raise AlertError(f"op must be one of {', '.join(COMPARISONS)} (got {op!r})")


def negate(op: Comparison) -> Comparison:
    """The comparison that holds exactly when ``op`` does not.

    Examples
    --------
    >>> negate(">"), negate("<=")
    ('<=', '>')
    """
    return {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[op]  # type: ignore[return-value]


def plain(value: object) -> EvidenceValue:
    """An evidence value as a plain JSON-ready Python value (numpy scalars included).

    Non-finite numbers become None; anything else that is not a number, a
    string or None becomes its text.

    Examples
    --------
    >>> import numpy as np
    >>> plain(np.int64(5)), plain(np.float64(0.5)), plain(np.bool_(True)), plain(float("nan"))
    (5, 0.5, True, None)
    """
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return str(value)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlertError(f"{name} must be a finite number (got {value!r})")
    return float(value)


@dataclass(frozen=True)
class RuleOutcome:
    """One rule's verdict on one key in one window.

    Attributes
    ----------
    key
        The alert key (rule, model, version, segment, feature).
    metric
        What the value is (``psi``, ``accuracy``, ``missing_rate``,
        ``drifted_features``, ``predictions``, …).
    value
        The observed value.
    op, threshold
        The breach condition ``value op threshold``.
    resolve_threshold
        The hysteresis threshold (equal to ``threshold`` when none is set).
    breached
        The window is a breach.
    resolved_ok
        The window counts towards resolving a firing alert: not a breach and
        past the resolve threshold.
    subject
        What a breach means, for people (``feature tenure drifted``).
    n
        The sample size behind the value (events, labelled events), if known.
    evidence
        The numbers behind the verdict.

    Examples
    --------
    >>> key = AlertKey("feature-drift", "churn", "3", "all", "tenure")
    >>> outcome = RuleOutcome.judge(key, "psi", 0.15, ">", 0.2, 0.1, "feature tenure drifted")
    >>> outcome.breached, outcome.resolved_ok
    (False, False)
    >>> RuleOutcome.judge(key, "psi", 0.08, ">", 0.2, 0.1, "feature tenure drifted").resolved_ok
    True
    """

    key: AlertKey
    metric: str
    value: float
    op: Comparison
    threshold: float
    resolve_threshold: float
    breached: bool
    resolved_ok: bool
    subject: str
    n: int | None = None
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)

    @property
    def rule(self) -> str:
        """Name of the rule."""
        return self.key.rule

    @classmethod
    def judge(
        cls,
        key: AlertKey,
        metric: str,
        value: float,
        op: Comparison,
        threshold: float,
        resolve_threshold: float | None,
        subject: str,
        *,
        n: int | None = None,
        evidence: Mapping[str, object] | None = None,
        breached: bool | None = None,
    ) -> RuleOutcome:
        """Compare ``value`` and build the outcome.

        ``breached`` overrides the comparison where a detector has already
        decided (a drift result's ``drifted``); ``resolve_threshold`` None
        means the breach threshold.
        """
        if isinstance(value, float) and math.isinf(value):
            # A statistic that overflowed (the squared errors of a diverging
            # regression model): beyond every threshold, held as the largest float.
            value = math.copysign(sys.float_info.max, value)
        value = _number("value", value)
        threshold = _number("threshold", threshold)
        resolve = (
            threshold
            if resolve_threshold is None
            else _number("resolve_threshold", resolve_threshold)
        )
        breach = compare(value, op, threshold) if breached is None else bool(breached)
        size = plain(n)
        if n is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise AlertError(f"n must be an integer or None (got {n!r})")
        return cls(
            key=key,
            metric=metric,
            value=value,
            op=op,
            threshold=threshold,
            resolve_threshold=resolve,
            breached=breach,
            resolved_ok=not breach and not compare(value, op, resolve),
            subject=subject,
            n=None if size is None else int(size),
            evidence={name: plain(item) for name, item in (evidence or {}).items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {
            "key": self.key.to_list(),
            "metric": self.metric,
            "value": self.value,
            "op": self.op,
            "threshold": self.threshold,
            "resolve_threshold": self.resolve_threshold,
            "breached": self.breached,
            "resolved_ok": self.resolved_ok,
            "subject": self.subject,
            "n": self.n,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleOutcome:
        """Inverse of :meth:`to_dict`; raises :class:`AlertError` on a malformed entry."""
        try:
            op = data["op"]
            if op not in COMPARISONS:
                raise AlertError(f"outcome op must be one of {', '.join(COMPARISONS)} (got {op!r})")
            n = data["n"]
            if n is not None and (isinstance(n, bool) or not isinstance(n, int)):
                raise AlertError(f"outcome n must be an integer or null (got {n!r})")
            evidence = data["evidence"]
            if not isinstance(evidence, dict):
                raise AlertError(f"outcome evidence must be an object (got {evidence!r})")
            return cls(
                key=AlertKey.from_list(data["key"]),
                metric=str(data["metric"]),
                value=_number("outcome value", data["value"]),
                op=cast(Comparison, op),
                threshold=_number("outcome threshold", data["threshold"]),
                resolve_threshold=_number("outcome resolve_threshold", data["resolve_threshold"]),
                breached=bool(data["breached"]),
                resolved_ok=bool(data["resolved_ok"]),
                subject=str(data["subject"]),
                n=n,
                evidence=evidence,
            )
        except KeyError as missing:
            raise AlertError(f"outcome entry lacks {missing}") from None
