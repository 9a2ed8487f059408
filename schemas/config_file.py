"""Loading a monitor configuration from YAML, safely and with clear errors.

The file is parsed with PyYAML's safe loader (no Python objects can be built
from it), duplicate keys are an error rather than a silent overwrite, anchors
and aliases are refused (they are how a tiny file expands to billions of nodes), and
``${NAME}`` in a string value is replaced by the environment variable NAME
(``${NAME:-fallback}`` when it may be unset) so secrets such as webhook URLs
need not be written into the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from schemas.config import MonitorConfig
from schemas.errors import ConfigError, FieldError, describe_validation_error, format_location

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _StrictSafeLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, anchors and aliases.

    A configuration has no use for ``&anchor`` / ``*alias``, and aliases let a
    few hundred bytes stand for a tree of billions of nodes ("billion laughs"),
    which the ``${NAME}`` substitution would then walk in full.
    """

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            mark = event.start_mark
            line = "?" if mark is None else str(mark.line + 1)
            what = (
                f"aliases (*{event.anchor})"
                if isinstance(event, yaml.AliasEvent)
                else f"anchors (&{event.anchor})"
            )
            raise yaml.composer.ComposerError(
                None,
                None,
                f"YAML {what} are not allowed in a configuration file (line {line})",
                mark if isinstance(mark, yaml.error.Mark) else None,
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a key must be a plain value, not {type(key).__name__}",
                key_node.start_mark,
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _substitute(value: Any, env: Mapping[str, str], loc: tuple[int | str, ...]) -> Any:
    if isinstance(value, dict):
        return {key: _substitute(item, env, (*loc, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, env, (*loc, index)) for index, item in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, fallback = match.group(1), match.group(2)
            if name not in env:
                if fallback is not None:
                    return fallback
                raise ConfigError(
                    [FieldError(format_location(loc), f"environment variable {name} is not set")]
                )
            return env[name]

        return _VARIABLE.sub(replace, value)
    return value


def parse_config(
    text: str, source: str = "<config>", env: Mapping[str, str] | None = None
) -> MonitorConfig:
    """Validate a monitor configuration given as YAML text.

    Parameters
    ----------
    text
        The YAML document.
    source
        Name of the file, used in error messages.
    env
        Variables for ``${NAME}`` substitution (default: the process environment).

    Raises
    ------
    ConfigError
        With one :class:`~schemas.errors.FieldError` per problem, each naming
        its key path.

    Examples
    --------
    >>> parse_config("models: [{id: m, task: binary, reference: r.json,"
    ...              " features: [{name: x, kind: numerc}]}]")
    Traceback (most recent call last):
    ...
    schemas.errors.ConfigError: models[0].features[0].kind: must be one of numeric, ...
    """
    try:
        document = yaml.load(text, Loader=_StrictSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError([FieldError("", f"{source} is not valid YAML: {exc}")]) from exc
    except RecursionError:
        raise ConfigError(
            [FieldError("", f"{source} is nested too deeply to be a configuration")]
        ) from None
    if not isinstance(document, dict):
        raise ConfigError([FieldError("", f"{source} must hold a mapping with a 'models' key")])
    document = _substitute(document, os.environ if env is None else env, ())
    try:
        return MonitorConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> MonitorConfig:
    """Read and validate a monitor configuration file (see :func:`parse_config`)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([FieldError("", f"cannot read {file}: {exc}")]) from exc
    return parse_config(text, source=str(file), env=env)
