"""Alerts: rules, alert state machines and retrain policies, as pure code.

Nothing here talks to Kafka, InfluxDB or chat services: ``streams/`` feeds
:class:`AlertEngine` with :class:`WindowObservation` values and publishes the
AlertEvents, RetrainRequests and :class:`Notification` messages it returns.
"""

from __future__ import annotations

from alerts.engine import AlertEngine, EngineOutput
from alerts.errors import AlertError
from alerts.key import AlertKey
from alerts.notification import Notification, notification
from alerts.observation import ChangePoints, WindowObservation
from alerts.outcome import RuleOutcome
from alerts.retrain import RetrainPlanner, request_id
from alerts.rules import check_rule, evaluate_rule
from alerts.state import AlertMachine, AlertStatus, WindowVerdict
from alerts.volume import VolumeBaseline, VolumeHistory

__all__ = [
    "AlertEngine",
    "AlertError",
    "AlertKey",
    "AlertMachine",
    "AlertStatus",
    "ChangePoints",
    "EngineOutput",
    "Notification",
    "RetrainPlanner",
    "RuleOutcome",
    "VolumeBaseline",
    "VolumeHistory",
    "WindowObservation",
    "WindowVerdict",
    "check_rule",
    "evaluate_rule",
    "notification",
    "request_id",
]
