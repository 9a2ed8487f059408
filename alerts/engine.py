"""The alert engine: observations in; alert events, retrain requests and messages out.

One :class:`AlertEngine` per process holds every alert state machine, the
volume history and the retrain policies' memory. The stream hands it each
:class:`~alerts.observation.WindowObservation` and publishes what comes back;
it does no I/O itself. Its state is a JSON-ready document
(:meth:`AlertEngine.snapshot`) to checkpoint after each batch; an engine
restored from it and fed the same observations again emits nothing new.

Order within one observation: rules in configuration order, and for each
rule its outcomes in the observation's feature order; the retrain policies
are then checked for the observation's model version.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from alerts.errors import AlertError
from alerts.key import AlertKey
from alerts.notification import Notification, notification
from alerts.observation import WindowObservation
from alerts.retrain import RetrainPlanner
from alerts.rules import check_rule, evaluate_rule
from alerts.state import AlertMachine, AlertStatus, WindowVerdict
from alerts.volume import DEFAULT_MIN_WINDOWS, DEFAULT_SIZE, VolumeHistory
from schemas.config import MonitorConfig
from schemas.outputs import AlertEvent, RetrainRequest

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
"""Version of the :meth:`AlertEngine.snapshot` document."""


@dataclass(frozen=True)
class EngineOutput:
    """What one observation produced.

    Attributes
    ----------
    alert_events
        Transitions (firing, resolved), for the alerts topic and InfluxDB.
    retrain_requests
        For the retrain-requests topic.
    notifications
        Chat messages, one per alert event whose rule has a channel.
    """

    alert_events: list[AlertEvent] = field(default_factory=list)
    retrain_requests: list[RetrainRequest] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing happened."""
        return not (self.alert_events or self.retrain_requests or self.notifications)


class AlertEngine:
    """Rules, alert state machines and retrain policies of one configuration.

    Parameters
    ----------
    config
        The monitor configuration (rules, channels, retrain policies, models'
        baselines, Grafana URL).
    volume_history
        Windows per model segment behind a ``volume_drop`` rule's usual volume.
    volume_min_history
        Earlier windows needed before a ``volume_drop`` rule judges.

    Raises
    ------
    AlertError
        For a rule the engine cannot evaluate (named by position and name).

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from detectors.result import DriftResult
    >>> config = MonitorConfig.model_validate({
    ...     "models": [{"id": "churn", "task": "binary", "reference": "ref.json",
    ...                 "features": [{"name": "tenure", "kind": "numeric"}]}],
    ...     "channels": {"oncall": {"urls": ["json://localhost"]}},
    ...     "rules": [{"name": "drift", "kind": "feature_drift", "metric": "psi", "op": ">",
    ...                "threshold": 0.2, "for": 2, "channel": "oncall"}],
    ... })
    >>> engine = AlertEngine(config)
    >>> start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    >>> def window(hour, psi):
    ...     result = DriftResult("psi", psi, None, 0.2, psi >= 0.2, 5000, 900)
    ...     begin = start + timedelta(hours=hour)
    ...     return WindowObservation("churn", "3", "all", begin, begin + timedelta(hours=1),
    ...                              feature_drift={"tenure": {"psi": result}})
    >>> [len(engine.observe(window(hour, psi)).alert_events)
    ...  for hour, psi in enumerate([0.3, 0.1, 0.3, 0.35, 0.4])]
    [0, 0, 0, 1, 0]
    >>> engine.firing()[0].summary
    'churn v3: feature tenure drifted (psi 0.35 > 0.2) in 2026-11-23 13:00–14:00 UTC'
    >>> restored = AlertEngine(config)
    >>> restored.restore(engine.snapshot())
    >>> restored.observe(window(4, 0.4)).empty
    True
    """

    def __init__(
        self,
        config: MonitorConfig,
        *,
        volume_history: int = DEFAULT_SIZE,
        volume_min_history: int = DEFAULT_MIN_WINDOWS,
    ) -> None:
        for index, rule in enumerate(config.rules):
            check_rule(rule, index)
        self.config = config
        self._rules = {rule.name: rule for rule in config.rules}
        self._volume_size = volume_history
        self._volume_min = volume_min_history
        self._volume = VolumeHistory(volume_history, volume_min_history)
        self._needs_volume = any(rule.kind == "volume_drop" for rule in config.rules)
        self._planner = RetrainPlanner(config.retrain)
        self._machines: dict[AlertKey, AlertMachine] = {}
        self.rule_errors = 0
        """Rule evaluations skipped because the window's value could not be read."""

    def observe(self, observation: WindowObservation) -> EngineOutput:
        """Evaluate every rule on one window; return the transitions it caused."""
        model = self.config.model(observation.model_id)
        if model is not None:
            observation = observation.with_baseline(model.performance.baseline)
        volume_baseline = None
        if self._needs_volume and observation.predictions is not None:
            volume_baseline = self._volume.observe(
                observation.model_id,
                observation.model_version,
                observation.segment,
                observation.window_start,
                observation.predictions,
            )
        events: list[AlertEvent] = []
        for rule in self.config.rules:
            try:
                outcomes = evaluate_rule(
                    rule, observation, model=model, volume_baseline=volume_baseline
                )
            except AlertError as exc:
                # One rule that cannot read this window (a NaN value, say) must
                # not cost the window every other rule's verdict.
                self.rule_errors += 1
                log.warning(
                    "rule %r skipped on %s v%s %s at %s: %s",
                    rule.name,
                    observation.model_id,
                    observation.model_version,
                    observation.segment,
                    observation.window_start.isoformat(),
                    exc,
                )
                continue
            for outcome in outcomes:
                machine = self._machines.get(outcome.key)
                if machine is None:
                    machine = self._machines[outcome.key] = AlertMachine(outcome.key)
                verdict = WindowVerdict(observation.window_start, observation.window_end, outcome)
                event = machine.step(rule, verdict)
                if event is not None:
                    events.append(event)
        requests = self._planner.evaluate(
            observation.model_id,
            observation.model_version,
            self.firing(observation.model_id, observation.model_version),
            observation.window_end,
        )
        messages = []
        for event in events:
            channel = self._rules[event.rule].channel
            if channel is not None:
                messages.append(notification(event, channel, self.config.grafana_url))
        return EngineOutput(events, requests, messages)

    def silences(
        self,
        observations: Sequence[WindowObservation],
        waiting: Collection[tuple[str, str, str, datetime]] = (),
    ) -> list[WindowObservation]:
        """Windows of zero predictions for segments missing from windows that closed together.

        A segment that stops receiving traffic sends no window at all, so the
        windows its model version closed at the same time stand in: every
        segment with a volume history (above zero) that has none of them
        gets an observation of 0 predictions, which ``volume_drop`` rules
        read like any other.  Only with such rules configured.  ``waiting``
        names windows (model, version, segment, start) known but not closed
        yet (a partition is behind): those segments are not silent.
        """
        if not self._needs_volume:
            return []
        closed = sorted(
            {
                (o.model_id, o.model_version, o.window_start, o.window_end)
                for o in observations
                if o.predictions is not None
            }
        )
        seen = {
            (o.model_id, o.model_version, o.segment, o.window_start)
            for o in observations
            if o.predictions is not None
        }
        return [
            WindowObservation(model_id, version, segment, start, end, predictions=0)
            for model_id, version, start, end in closed
            for segment in self._volume.silent(model_id, version, start)
            if (model_id, version, segment, start) not in seen
            and (model_id, version, segment, start) not in waiting
        ]

    def firing(
        self, model_id: str | None = None, model_version: str | None = None
    ) -> list[AlertEvent]:
        """The firing events of every alert now firing (optionally of one model / version)."""
        events = []
        for key in sorted(self._machines, key=AlertKey.sort_key):
            event = self._machines[key].firing_event
            if event is None:
                continue
            if model_id is not None and key.model_id != model_id:
                continue
            if model_version is not None and key.model_version != model_version:
                continue
            events.append(event)
        return events

    def status(self) -> list[AlertStatus]:
        """Every alert key's state, sorted by key."""
        return [
            self._machines[key].status() for key in sorted(self._machines, key=AlertKey.sort_key)
        ]

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as a JSON-ready document (see :meth:`restore`)."""
        return {
            "format": SNAPSHOT_FORMAT,
            "alerts": [
                self._machines[key].to_dict()
                for key in sorted(self._machines, key=AlertKey.sort_key)
            ],
            "volume": self._volume.to_list(),
            "retrain": self._planner.to_dict(),
        }

    def restore(self, document: Mapping[str, Any]) -> None:
        """Replace the state with a :meth:`snapshot` document.

        Alerts of rules no longer in the configuration are dropped; the rest
        continue under the rules' current settings.

        Raises
        ------
        AlertError
            For a document of another format or a malformed entry.
        """
        if not isinstance(document, Mapping) or document.get("format") != SNAPSHOT_FORMAT:
            found = document.get("format") if isinstance(document, Mapping) else document
            raise AlertError(f"snapshot format must be {SNAPSHOT_FORMAT} (got {found!r})")
        try:
            entries = document["alerts"]
            volume_data = document["volume"]
            retrain_data = document["retrain"]
        except KeyError as missing:
            raise AlertError(f"snapshot lacks {missing}") from None
        if not isinstance(entries, list):
            raise AlertError(f"snapshot alerts must be a list (got {type(entries).__name__})")
        machines: dict[AlertKey, AlertMachine] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise AlertError(f"snapshot alert entry must be an object (got {entry!r})")
            machine = AlertMachine.from_dict(entry)
            if machine.key.rule in self._rules:
                machines[machine.key] = machine
        volume = VolumeHistory(self._volume_size, self._volume_min)
        volume.load(volume_data)
        planner = RetrainPlanner(self.config.retrain)
        planner.load(retrain_data)
        self._machines, self._volume, self._planner = machines, volume, planner
