"""JSON Schema documents for every event and for the configuration file.

The files in ``docs/schemas/`` are generated from the pydantic models by
``python -m schemas.jsonschema docs/schemas`` (``make schemas``); a test fails
when they are stale, so the published contract never drifts from the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.config import MonitorConfig
from schemas.events import LabelEvent, PredictionEvent
from schemas.outputs import AlertEvent, DeadLetter, RetrainRequest

DOCUMENTED: dict[str, tuple[type[BaseModel], str]] = {
    "prediction-event": (PredictionEvent, "validation"),
    "label-event": (LabelEvent, "validation"),
    "alert-event": (AlertEvent, "serialization"),
    "retrain-request": (RetrainRequest, "serialization"),
    "dead-letter": (DeadLetter, "serialization"),
    "monitor-config": (MonitorConfig, "validation"),
}
"""File stem to (model, mode): inputs are documented as accepted, outputs as written."""


def json_schemas() -> dict[str, str]:
    """File name to JSON text for every documented model.

    Examples
    --------
    >>> sorted(json_schemas())[:2]
    ['alert-event.schema.json', 'dead-letter.schema.json']
    """
    documents: dict[str, str] = {}
    for stem, (model, mode) in DOCUMENTED.items():
        schema: dict[str, Any] = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        documents[f"{stem}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return documents


def write_json_schemas(directory: Path) -> list[Path]:
    """Write every schema file into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m schemas.jsonschema DIRECTORY``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m schemas.jsonschema DIRECTORY", file=sys.stderr)
        return 2
    for path in write_json_schemas(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
