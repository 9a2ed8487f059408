"""The exception type of :mod:`alerts`.

Every message names the rule (by its position and name in the configuration),
the observation field or the snapshot entry that is wrong, and what would have
been valid.
"""

from __future__ import annotations


class AlertError(ValueError):
    """A rule, an observation or a saved alert state is invalid.

    Examples
    --------
    >>> raise AlertError("rules[0] 'drift': op needs a threshold")
    Traceback (most recent call last):
    ...
    alerts.errors.AlertError: rules[0] 'drift': op needs a threshold
    """
