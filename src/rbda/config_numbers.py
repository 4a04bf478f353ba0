"""Every number of the workflow configuration finite.

JSON Schema cannot refuse NaN (every comparison with it is false, so ``minimum``
and ``maximum`` let it through) and lets ``.inf`` through any bound it does not
state. :func:`check_finite_numbers` runs right after the schema's validation
(``Snakefile``), before anything is planned: a YAML ``.inf`` or ``.nan`` anywhere
in the configuration is a :class:`~rbda.errors.ConfigKeyError` naming the key.
The schema's ranges check the finite values.
"""

from __future__ import annotations

import math

from rbda.errors import ConfigKeyError


def check_finite_numbers(config: object, where: str = "") -> None:
    """A :class:`ConfigKeyError` for the first non-finite number in ``config`` (mappings and lists walked)."""
    if isinstance(config, dict):
        for key, value in config.items():
            check_finite_numbers(value, f"{where}.{key}" if where else str(key))
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            check_finite_numbers(value, f"{where}[{i}]")
    elif isinstance(config, float) and not math.isfinite(config):
        raise ConfigKeyError(where, f"config key {where}: expected a finite number, got {config!r} "
                                    "(YAML .inf and .nan are not settings)")
