"""What a chat message about an alert says: title, one-line body, dashboard link.

Building the message is pure; sending it (apprise, to every URL of the
channel, with retries) is the notifier's job in ``streams/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from alerts.outcome import COMPARISONS, negate
from alerts.text import SYMBOLS, number, where, window_text
from schemas.outputs import ALL_SEGMENTS, AlertEvent

DASHBOARD_PATH = "/d/driftline-model/driftline-model"
"""Grafana path of the per-model dashboard (its uid is ``driftline-model``)."""

LINK_WINDOWS_BEFORE = 6
"""Windows of context before the alert's window in a dashboard link."""


@dataclass(frozen=True)
class Notification:
    """One chat message to one channel about one alert transition.

    Attributes
    ----------
    channel
        Name of the rule's channel (its apprise URLs are in the configuration).
    title
        ``[FIRING] critical: accuracy-drop on churn v3`` and the like.
    body
        One line: where, feature, value against threshold, window, n.
    event
        The AlertEvent it is about.
    link
        The Grafana dashboard around the window, when a base URL is configured.

    Examples
    --------
    >>> event = AlertEvent(
    ...     alert_id="a1", rule="feature-drift", state="firing", severity="warning",
    ...     model_id="churn", model_version="3", segment="region=eu", metric="psi",
    ...     feature="tenure", value=0.31, threshold=0.2,
    ...     window_start="2026-11-23T10:00:00Z", window_end="2026-11-23T11:00:00Z",
    ...     fired_at="2026-11-23T11:00:00Z", summary="tenure drifted",
    ...     evidence={"n": 5000, "op": ">"},
    ... )
    >>> message = notification(event, "oncall", "http://grafana:3000/")
    >>> message.title
    '[FIRING] warning: feature-drift on churn v3 [region=eu]'
    >>> message.body.split(" · ")
    ['churn v3 [region=eu]', 'feature tenure', 'psi 0.31 > 0.2',
     'window 2026-11-23 10:00–11:00 UTC', 'n=5000']
    >>> base, query = message.link.split("?")
    >>> base
    'http://grafana:3000/d/driftline-model/driftline-model'
    >>> query.split("&")
    ['var-model_id=churn', 'var-model_version=3', 'var-segment=region%3Deu',
     'var-feature=tenure', 'from=1795406400000', 'to=1795435200000']
    """

    channel: str
    title: str
    body: str
    event: AlertEvent
    link: str | None = None


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def dashboard_link(base_url: str, event: AlertEvent) -> str:
    """The dashboard of the event's model version, segment and feature around its window."""
    size = event.window_end - event.window_start
    query: dict[str, str | int] = {
        "var-model_id": event.model_id,
        "var-model_version": event.model_version,
    }
    if event.segment != ALL_SEGMENTS:
        query["var-segment"] = event.segment
    if event.feature is not None:
        query["var-feature"] = event.feature
    query["from"] = _millis(event.window_start - LINK_WINDOWS_BEFORE * size)
    query["to"] = _millis(event.window_end + size)
    return f"{base_url.rstrip('/')}{DASHBOARD_PATH}?{urlencode(query)}"


def notification(event: AlertEvent, channel: str, grafana_url: str | None = None) -> Notification:
    """The chat message for one AlertEvent.

    The body shows the value against the threshold the transition used: the
    breach comparison for a firing alert, the good side of the resolve
    threshold for a resolved one.
    """
    place = where(event.model_id, event.model_version, event.segment)
    title = f"[{event.state.upper()}] {event.severity}: {event.rule} on {place}"
    op = event.evidence.get("op")
    shown = "vs"
    for comparison in COMPARISONS:
        if op == comparison:
            shown = SYMBOLS[comparison if event.state == "firing" else negate(comparison)]
    parts = [place]
    if event.feature is not None:
        parts.append(f"feature {event.feature}")
    parts.append(f"{event.metric} {number(event.value)} {shown} {number(event.threshold)}")
    parts.append(f"window {window_text(event.window_start, event.window_end)}")
    n = event.evidence.get("n")
    if isinstance(n, int) and not isinstance(n, bool):
        parts.append(f"n={n}")
    link = None if grafana_url is None else dashboard_link(grafana_url, event)
    return Notification(channel, title, " · ".join(parts), event, link)
