"""Event, configuration and settings schemas of driftline (pydantic v2).

Pure code: nothing here talks to Kafka, InfluxDB or chat services.
"""

from __future__ import annotations

from schemas.config import ModelConfig, MonitorConfig, RuleConfig
from schemas.config_file import load_config, parse_config
from schemas.errors import ConfigError, FieldError, InvalidEvent, SchemaError
from schemas.events import LabelEvent, PredictionEvent, decode_label, decode_prediction
from schemas.limits import DEFAULT_LIMITS, InputLimits
from schemas.outputs import AlertEvent, DeadLetter, RetrainReason, RetrainRequest, segment_key
from schemas.settings import DriftlineSettings

__all__ = [
    "DEFAULT_LIMITS",
    "AlertEvent",
    "ConfigError",
    "DeadLetter",
    "DriftlineSettings",
    "FieldError",
    "InputLimits",
    "InvalidEvent",
    "LabelEvent",
    "ModelConfig",
    "MonitorConfig",
    "PredictionEvent",
    "RetrainReason",
    "RetrainRequest",
    "RuleConfig",
    "SchemaError",
    "decode_label",
    "decode_prediction",
    "load_config",
    "parse_config",
    "segment_key",
]
