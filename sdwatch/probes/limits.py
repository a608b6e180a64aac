"""Numeric field limits shared by the probes that read a server's own counters
(memcached ``stats``, Redis ``INFO``): "field=number" items, typed values, the check."""

from __future__ import annotations

import re
from typing import Mapping

from sdwatch.probes.errors import CheckFailed, Metric


def parse_limits(items: tuple[str, ...]) -> dict[str, float]:
    """Given ("curr_connections=900", ...), return {name: number}; raise ValueError."""
    limits: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not name.replace("_", "").isalnum():
            raise ValueError(f"expected FIELD=NUMBER such as curr_connections=900, got {item!r}")
        try:
            limits[name] = float(value)
        except ValueError:
            raise ValueError(f"{item!r}: {value!r} is not a number") from None
    return limits


def number(text: str) -> Metric:
    """Given a field's text, return it as int or float when it is a plain decimal, else str."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]*\.[0-9]+")


def check(fields: Mapping[str, Metric], maxima: Mapping[str, float],
          minima: Mapping[str, float], metrics: Mapping[str, Metric], source: str) -> None:
    """Raise CheckFailed (carrying ``metrics``) for the first field above its maximum or
    below its minimum, or missing from ``fields`` (named after ``source``)."""
    for limits, worse, word in ((maxima, float.__gt__, "above"), (minima, float.__lt__, "below")):
        for name, limit in limits.items():
            value = fields.get(name)
            if not isinstance(value, (int, float)):
                raise CheckFailed(f"{source} has no numeric field {name!r}", metrics)
            if worse(float(value), limit):
                raise CheckFailed(f"{name} {value:g} {word} {limit:g}", metrics)
