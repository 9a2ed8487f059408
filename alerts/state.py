"""The alert state machine of one key: ok → pending → firing → resolved → ok.

Each window's :class:`~alerts.outcome.RuleOutcome` for the key is recorded by
window start (the *verdict* of that window), so the same window observed
twice — performance re-evaluated as labels join, or a replay after a
restart — replaces its verdict instead of counting twice. After each
verdict the machine looks at the streak of *consecutive* windows ending at
the newest recorded window; windows are consecutive when one starts where the
previous ended, so a missing window (no outcome for it: no traffic, no
result, too little data) breaks a streak and the count starts again.

Phases and transitions:

``ok``
    The newest window is not a breach.
``pending``
    The newest ``n`` windows are breaches, ``0 < n < for_windows``; or
    ``n >= for_windows`` but the alert is *held* by its cooldown (below).
``firing``
    Entered when ``n >= for_windows`` (and no cooldown holds it): emits one
    ``firing`` AlertEvent whose ``alert_id`` is a digest of the key and the
    window it fired in (see :meth:`AlertKey.alert_id`), ``fired_at`` that
    window's end. No event while it stays firing, whatever the values do.
    A gap while firing does not resolve anything; it only restarts the count
    of good windows.
``resolved``
    Entered from ``firing`` when the newest ``resolve.for_windows``
    consecutive windows since (and including) the firing window are all
    *resolved-ok* (not a breach, and past ``resolve.threshold`` when set —
    hysteresis: a value between the two thresholds neither fires nor
    resolves): emits one ``resolved`` AlertEvent with the same ``alert_id``
    and ``fired_at``, the resolving window, its value and the resolve
    threshold. The machine stays ``resolved`` until a window newer than the
    resolving one arrives, then moves to ``ok`` or ``pending``.

Cooldown: after a resolution, a breach streak only counts windows that start
after the resolving window, and the alert may fire again only in a window
that ends at least ``cooldown`` after the resolving window's end (event time,
so replays decide the same). Until then a streak long enough to fire is
*held*: the phase is ``pending`` with ``held`` True, nothing is emitted; if
the streak still holds in the first window past the cooldown it fires then,
as a new occurrence with a new ``alert_id``. A problem that persists is
therefore never lost, only delayed; one that flaps produces at most one
firing per cooldown.

Memory: the verdicts of the newest ``max(for_windows, resolve.for_windows)``
windows; a verdict for an older window cannot change a streak ending at the
newest and is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import ValidationError

from alerts.errors import AlertError
from alerts.key import AlertKey
from alerts.outcome import RuleOutcome
from alerts.text import summary
from schemas.config import RuleConfig
from schemas.outputs import AlertEvent, AlertState, EvidenceValue

Phase = Literal["ok", "pending", "firing", "resolved"]
PHASES: tuple[Phase, ...] = ("ok", "pending", "firing", "resolved")


@dataclass(frozen=True)
class WindowVerdict:
    """A rule's outcome for one key in one window.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> key = AlertKey("drift", "churn", "3", "all", "tenure")
    >>> outcome = RuleOutcome.judge(key, "psi", 0.31, ">", 0.2, None, "feature tenure drifted")
    >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    >>> WindowVerdict(start, start.replace(hour=11), outcome).outcome.breached
    True
    """

    window_start: datetime
    window_end: datetime
    outcome: RuleOutcome

    def to_list(self) -> list[Any]:
        """JSON-ready form."""
        return [self.window_start.isoformat(), self.window_end.isoformat(), self.outcome.to_dict()]

    @classmethod
    def from_list(cls, data: Any) -> WindowVerdict:
        """Inverse of :meth:`to_list`."""
        start, end, outcome = data
        return cls(_instant(start), _instant(end), RuleOutcome.from_dict(outcome))


@dataclass(frozen=True)
class AlertStatus:
    """Where one alert key stands (for status pages and tests).

    Attributes
    ----------
    key
        The alert key.
    phase
        ``ok``, ``pending``, ``firing`` or ``resolved``.
    held
        Pending only because the cooldown after the last resolution holds it.
    streak
        Consecutive windows ending at the newest: breaches when not firing,
        resolved-ok windows when firing (counted over the retained windows,
        so at most ``max(for_windows, resolve.for_windows)``).
    alert_id, fired_at
        The firing occurrence, when firing.
    newest_window_start
        Start of the newest window with a verdict.
    """

    key: AlertKey
    phase: Phase
    held: bool
    streak: int
    alert_id: str | None
    fired_at: datetime | None
    newest_window_start: datetime | None


def _instant(text: Any) -> datetime:
    if not isinstance(text, str):
        raise AlertError(f"snapshot time must be an ISO 8601 string (got {text!r})")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise AlertError(f"snapshot time {text!r} lacks a UTC offset")
    return moment


class AlertMachine:
    """The state machine of one alert key.

    Parameters
    ----------
    key
        The key every outcome given to :meth:`step` must have.

    Examples
    --------
    A rule with ``for: 2``: the first breach is pending, the second fires,
    the third says nothing, the good window resolves.

    >>> from datetime import UTC, datetime, timedelta
    >>> rule = RuleConfig(name="drift", kind="feature_drift", op=">", threshold=0.2,
    ...                   **{"for": 2})
    >>> key = AlertKey("drift", "churn", "3", "all", "tenure")
    >>> machine = AlertMachine(key)
    >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    >>> for hour, psi in enumerate([0.31, 0.35, 0.4, 0.05]):
    ...     window = start + timedelta(hours=hour)
    ...     outcome = RuleOutcome.judge(key, "psi", psi, ">", 0.2, None, "tenure drifted")
    ...     event = machine.step(rule, WindowVerdict(window, window + timedelta(hours=1), outcome))
    ...     print(machine.phase, event and event.summary)
    pending None
    firing churn v3: tenure drifted (psi 0.35 > 0.2) in 2026-11-23 11:00–12:00 UTC
    firing None
    resolved churn v3: resolved: tenure drifted (psi 0.05 ≤ 0.2) in 2026-11-23 13:00–14:00 UTC
    """

    def __init__(self, key: AlertKey) -> None:
        self.key = key
        self._phase: Phase = "ok"
        self._held = False
        self._streak = 0
        self._verdicts: dict[datetime, WindowVerdict] = {}
        self._firing: AlertEvent | None = None
        self._resolved_at: datetime | None = None
        self._resolved_window_start: datetime | None = None

    @property
    def phase(self) -> Phase:
        """The current phase."""
        return self._phase

    @property
    def firing_event(self) -> AlertEvent | None:
        """The ``firing`` AlertEvent of the current occurrence, when firing."""
        return self._firing

    def status(self) -> AlertStatus:
        """A read-only view of the machine."""
        newest = max(self._verdicts) if self._verdicts else None
        firing = self._firing
        return AlertStatus(
            key=self.key,
            phase=self._phase,
            held=self._held,
            streak=self._streak,
            alert_id=None if firing is None else firing.alert_id,
            fired_at=None if firing is None else firing.fired_at,
            newest_window_start=newest,
        )

    def step(self, rule: RuleConfig, verdict: WindowVerdict) -> AlertEvent | None:
        """Record one window's verdict; return the AlertEvent of a transition, if any."""
        if verdict.outcome.key != self.key:
            raise AlertError(
                f"outcome key {verdict.outcome.key} does not belong to the machine of {self.key}"
            )
        if verdict.window_end <= verdict.window_start:
            raise AlertError("verdict window_end must be after window_start")
        keep = max(rule.for_windows, rule.resolve.for_windows)
        start = verdict.window_start
        if (
            start not in self._verdicts
            and len(self._verdicts) >= keep
            and start < min(self._verdicts)
        ):
            return None
        self._verdicts[start] = verdict
        for old in sorted(self._verdicts)[:-keep]:
            del self._verdicts[old]
        newest = self._verdicts[max(self._verdicts)]
        if self._firing is not None:
            return self._while_firing(rule, newest, self._firing)
        resolved_start = self._resolved_window_start
        if resolved_start is not None and newest.window_start <= resolved_start:
            self._phase, self._held, self._streak = "resolved", False, 0
            return None
        self._streak = self._count(lambda o: o.breached, resolved_start, inclusive=False)
        self._held = False
        if self._streak == 0:
            self._phase = "ok"
            return None
        if self._streak < rule.for_windows:
            self._phase = "pending"
            return None
        if self._resolved_at is not None and newest.window_end < self._resolved_at + rule.cooldown:
            self._phase, self._held = "pending", True
            return None
        event = self._event("firing", rule, newest, newest.outcome.threshold, None)
        self._phase, self._firing = "firing", event
        return event

    def _while_firing(
        self, rule: RuleConfig, newest: WindowVerdict, firing: AlertEvent
    ) -> AlertEvent | None:
        self._streak = self._count(lambda o: o.resolved_ok, firing.window_start, inclusive=True)
        if self._streak < rule.resolve.for_windows:
            return None
        event = self._event("resolved", rule, newest, newest.outcome.resolve_threshold, firing)
        self._phase, self._firing = "resolved", None
        self._resolved_at, self._resolved_window_start = newest.window_end, newest.window_start
        return event

    def _count(
        self, good: Callable[[RuleOutcome], bool], bound: datetime | None, *, inclusive: bool
    ) -> int:
        """Consecutive windows ending at the newest whose outcome is ``good``, after ``bound``."""
        count = 0
        previous: WindowVerdict | None = None
        for start in sorted(self._verdicts, reverse=True):
            verdict = self._verdicts[start]
            if bound is not None and (start < bound or (start == bound and not inclusive)):
                break
            if previous is not None and verdict.window_end != previous.window_start:
                break
            if not good(verdict.outcome):
                break
            count += 1
            previous = verdict
        return count

    def _event(
        self,
        state: AlertState,
        rule: RuleConfig,
        verdict: WindowVerdict,
        threshold: float,
        firing: AlertEvent | None,
    ) -> AlertEvent:
        outcome = verdict.outcome
        evidence: dict[str, EvidenceValue] = dict(outcome.evidence)
        evidence.update(
            n=outcome.n,
            op=outcome.op,
            threshold=outcome.threshold,
            resolve_threshold=outcome.resolve_threshold,
        )
        if state == "firing":
            evidence["for_windows"] = rule.for_windows
        else:
            evidence["resolve_for_windows"] = rule.resolve.for_windows
        return AlertEvent(
            alert_id=firing.alert_id if firing else self.key.alert_id(verdict.window_start),
            rule=self.key.rule,
            state=state,
            severity=rule.severity,
            model_id=self.key.model_id,
            model_version=self.key.model_version,
            segment=self.key.segment,
            metric=outcome.metric,
            feature=self.key.feature,
            value=outcome.value,
            threshold=threshold,
            window_start=verdict.window_start,
            window_end=verdict.window_end,
            fired_at=firing.fired_at if firing else verdict.window_end,
            summary=summary(
                state,
                model_id=self.key.model_id,
                model_version=self.key.model_version,
                segment=self.key.segment,
                subject=outcome.subject,
                metric=outcome.metric,
                value=outcome.value,
                op=outcome.op,
                threshold=threshold,
                window_start=verdict.window_start,
                window_end=verdict.window_end,
            ),
            evidence=evidence,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        resolved_at = self._resolved_at
        resolved_start = self._resolved_window_start
        return {
            "key": self.key.to_list(),
            "phase": self._phase,
            "held": self._held,
            "streak": self._streak,
            "verdicts": [self._verdicts[start].to_list() for start in sorted(self._verdicts)],
            "firing": None if self._firing is None else self._firing.model_dump(mode="json"),
            "resolved_at": None if resolved_at is None else resolved_at.isoformat(),
            "resolved_window_start": None if resolved_start is None else resolved_start.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertMachine:
        """Inverse of :meth:`to_dict`; raises :class:`AlertError` on a malformed entry."""
        try:
            machine = cls(AlertKey.from_list(data["key"]))
            phase = data["phase"]
            if phase not in PHASES:
                raise AlertError(f"alert phase must be one of {', '.join(PHASES)} (got {phase!r})")
            machine._phase = cast(Phase, phase)
            machine._held = bool(data["held"])
            machine._streak = int(data["streak"])
            for entry in data["verdicts"]:
                verdict = WindowVerdict.from_list(entry)
                if verdict.outcome.key != machine.key:
                    raise AlertError(
                        f"a verdict of {machine.key} has the key {verdict.outcome.key}"
                    )
                machine._verdicts[verdict.window_start] = verdict
            firing = data["firing"]
            machine._firing = None if firing is None else AlertEvent.model_validate(firing)
            if (machine._firing is not None) != (phase == "firing"):
                raise AlertError(f"alert {machine.key} is {phase} but its firing event disagrees")
            for name in ("resolved_at", "resolved_window_start"):
                value = data[name]
                setattr(machine, f"_{name}", None if value is None else _instant(value))
        except KeyError as missing:
            raise AlertError(f"snapshot alert entry lacks {missing}") from None
        except (TypeError, ValueError, ValidationError) as error:
            if isinstance(error, AlertError):
                raise
            raise AlertError(f"snapshot alert entry is malformed: {error}") from None
        return machine
