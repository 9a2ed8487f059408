"""How alerts read to people: numbers, windows, where, and the one-line summary."""

from __future__ import annotations

from datetime import datetime

from alerts.outcome import Comparison, negate
from schemas.outputs import ALL_SEGMENTS, AlertState

SYMBOLS: dict[str, str] = {">": ">", ">=": "≥", "<": "<", "<=": "≤"}
"""Comparison operators as printed."""

SUMMARY_LIMIT = 500
"""Longest summary (the AlertEvent schema's limit)."""


def number(value: float) -> str:
    """A value with four significant digits, integers without a fraction.

    Examples
    --------
    >>> number(0.31), number(0.123456), number(1200.0), number(1e-05)
    ('0.31', '0.1235', '1200', '1e-05')
    """
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def window_text(start: datetime, end: datetime) -> str:
    """A window in UTC; the end's date is left out when it is the start's.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> window_text(datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 11, tzinfo=UTC))
    '2026-11-23 10:00–11:00 UTC'
    >>> window_text(datetime(2026, 11, 23, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC))
    '2026-11-23 23:00–2026-11-24 00:00 UTC'
    """
    end_format = "%H:%M" if start.date() == end.date() else "%Y-%m-%d %H:%M"
    return f"{start:%Y-%m-%d %H:%M}–{end.strftime(end_format)} UTC"


def where(model_id: str, model_version: str, segment: str) -> str:
    """Model, version and segment (the whole-model segment is not printed).

    Examples
    --------
    >>> where("churn", "3", "region=eu"), where("churn", "v3", "all")
    ('churn v3 [region=eu]', 'churn v3')
    """
    version = model_version if model_version.lower().startswith("v") else f"v{model_version}"
    text = f"{model_id} {version}"
    return text if segment == ALL_SEGMENTS else f"{text} [{segment}]"


def condition(metric: str, value: float, op: Comparison, threshold: float) -> str:
    """``metric value op threshold`` as printed.

    Examples
    --------
    >>> condition("psi", 0.31, ">=", 0.2)
    'psi 0.31 ≥ 0.2'
    """
    return f"{metric} {number(value)} {SYMBOLS[op]} {number(threshold)}"


def summary(
    state: AlertState,
    *,
    model_id: str,
    model_version: str,
    segment: str,
    subject: str,
    metric: str,
    value: float,
    op: Comparison,
    threshold: float,
    window_start: datetime,
    window_end: datetime,
) -> str:
    """The AlertEvent's one-line summary.

    For a firing alert ``threshold`` is the breach threshold and the condition
    is printed as breached; for a resolved one it is the resolve threshold and
    the condition is printed as met on the good side.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> start, end = datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 11, tzinfo=UTC)
    >>> summary("firing", model_id="churn", model_version="3", segment="region=eu",
    ...         subject="feature tenure drifted", metric="psi", value=0.31, op=">=",
    ...         threshold=0.2, window_start=start, window_end=end)
    'churn v3 [region=eu]: feature tenure drifted (psi 0.31 ≥ 0.2) in 2026-11-23 10:00–11:00 UTC'
    >>> summary("resolved", model_id="churn", model_version="3", segment="all",
    ...         subject="feature tenure drifted", metric="psi", value=0.08, op=">=",
    ...         threshold=0.1, window_start=start, window_end=end)
    'churn v3: resolved: feature tenure drifted (psi 0.08 < 0.1) in 2026-11-23 10:00–11:00 UTC'
    """
    shown = op if state == "firing" else negate(op)
    prefix = "" if state == "firing" else "resolved: "
    text = (
        f"{where(model_id, model_version, segment)}: {prefix}{subject} "
        f"({condition(metric, value, shown, threshold)}) in {window_text(window_start, window_end)}"
    )
    if len(text) > SUMMARY_LIMIT:
        text = text[: SUMMARY_LIMIT - 1] + "…"
    return text
