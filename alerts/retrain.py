"""Retrain policies: firing alerts → one RetrainRequest per trigger, with a cooldown.

A policy counts the *firing* alerts of its rules for one model version (all
segments and features together). It triggers when at least ``min_alerts``
are firing at once and at least one of them is not yet behind a request of
this policy for this version — so the same firing alerts never ask twice,
and a new alert joining them asks again (with all of them as reasons).

Cooldown, per model (across versions and policies): a request is held while
its ``requested_at`` is less than ``cooldown`` (the policy's) after the
latest request for the model; the trigger is checked again on the model's
next observation and, if it still holds after the cooldown, the request goes
out then. Time is event time: ``requested_at`` is the latest of the
observation's window end and the triggering alerts' window ends, so replays
decide the same.

``request_id`` is a digest of the model, the version and the sorted ids of
the triggering alerts: a pipeline that receives the same request twice (a
replay) retrains once. ``window_start`` / ``window_end`` span the windows the
triggering alerts fired in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from alerts.errors import AlertError
from schemas.config import RetrainPolicyConfig
from schemas.outputs import AlertEvent, RetrainReason, RetrainRequest


def request_id(model_id: str, model_version: str, alert_ids: Sequence[str]) -> str:
    """Idempotency key of a request: 32 hex digits over model, version and alert ids.

    Examples
    --------
    >>> request_id("churn", "3", ["b", "a"]) == request_id("churn", "3", ["a", "b"])
    True
    >>> request_id("churn", "3", ["a"]) == request_id("churn", "4", ["a"])
    False
    """
    text = "\x1f".join([model_id, model_version, *sorted(alert_ids)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _reason(event: AlertEvent) -> RetrainReason:
    return RetrainReason(
        alert_id=event.alert_id,
        rule=event.rule,
        metric=event.metric,
        feature=event.feature,
        value=event.value,
        threshold=event.threshold,
    )


class RetrainPlanner:
    """Turns the firing alerts of a model version into retrain requests.

    Parameters
    ----------
    policies
        The configuration's retrain policies, evaluated in order.

    Examples
    --------
    >>> from datetime import UTC, datetime
    >>> policy = RetrainPolicyConfig(name="decay", rules=["accuracy-drop"], cooldown="1d")
    >>> planner = RetrainPlanner([policy])
    >>> alert = AlertEvent(
    ...     alert_id="a1", rule="accuracy-drop", state="firing", severity="critical",
    ...     model_id="churn", model_version="3", segment="all", metric="accuracy",
    ...     feature=None, value=0.81, threshold=0.85,
    ...     window_start="2026-11-23T10:00:00Z", window_end="2026-11-23T11:00:00Z",
    ...     fired_at="2026-11-23T11:00:00Z", summary="churn v3: accuracy dropped",
    ... )
    >>> now = datetime(2026, 11, 23, 11, tzinfo=UTC)
    >>> [r.reasons[0].alert_id for r in planner.evaluate("churn", "3", [alert], now)]
    ['a1']
    >>> planner.evaluate("churn", "3", [alert], now)  # the same alert asks once
    []
    """

    def __init__(self, policies: Sequence[RetrainPolicyConfig]) -> None:
        self.policies = tuple(policies)
        self._last_request: dict[str, datetime] = {}
        self._covered: dict[tuple[str, str, str], set[str]] = {}

    def evaluate(
        self,
        model_id: str,
        model_version: str,
        firing: Sequence[AlertEvent],
        now: datetime,
    ) -> list[RetrainRequest]:
        """Requests due for one model version, given its currently firing alerts.

        Parameters
        ----------
        model_id, model_version
            The model version just observed.
        firing
            Every firing AlertEvent (others are ignored).
        now
            The observation's window end (event time).
        """
        requests: list[RetrainRequest] = []
        for policy in self.policies:
            if policy.models and model_id not in policy.models:
                continue
            counted = sorted(
                (
                    event
                    for event in firing
                    if event.state == "firing"
                    and event.rule in policy.rules
                    and event.model_id == model_id
                    and event.model_version == model_version
                ),
                key=lambda event: (event.rule, event.feature or "", event.segment, event.alert_id),
            )
            ids = {event.alert_id for event in counted}
            slot = (policy.name, model_id, model_version)
            covered = self._covered.get(slot, set()) & ids
            if covered:
                self._covered[slot] = covered
            else:
                self._covered.pop(slot, None)
            if len(counted) < policy.min_alerts or ids <= covered:
                continue
            requested_at = max([now, *(event.window_end for event in counted)])
            last = self._last_request.get(model_id)
            if last is not None and requested_at < last + policy.cooldown:
                continue
            requests.append(
                RetrainRequest(
                    request_id=request_id(model_id, model_version, sorted(ids)),
                    model_id=model_id,
                    model_version=model_version,
                    requested_at=requested_at,
                    reasons=[_reason(event) for event in counted],
                    window_start=min(event.window_start for event in counted),
                    window_end=max(event.window_end for event in counted),
                )
            )
            self._covered[slot] = ids
            self._last_request[model_id] = requested_at if last is None else max(last, requested_at)
        return requests

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`load`)."""
        return {
            "last_request": {
                model: moment.isoformat() for model, moment in sorted(self._last_request.items())
            },
            "covered": [[*slot, sorted(ids)] for slot, ids in sorted(self._covered.items())],
        }

    def load(self, data: Any) -> None:
        """Replace the state with what :meth:`to_dict` wrote."""
        try:
            last = {
                str(model): datetime.fromisoformat(text)
                for model, text in data["last_request"].items()
            }
            covered = {
                (str(policy), str(model), str(version)): {str(i) for i in ids}
                for policy, model, version, ids in data["covered"]
            }
        except KeyError as missing:
            raise AlertError(f"snapshot retrain state lacks {missing}") from None
        except (TypeError, ValueError, AttributeError) as error:
            raise AlertError(f"snapshot retrain state is malformed: {error}") from None
        if any(moment.tzinfo is None for moment in last.values()):
            raise AlertError("snapshot retrain last_request times need a UTC offset")
        self._last_request = last
        self._covered = covered
