"""Durations, sizes and percentages as written in the config file.

Leaf module: the config loader and the probe specs both use these types, so the
parsing rules (and their error messages) live in one place.
"""

from __future__ import annotations

import re
from typing import NewType

Duration = NewType("Duration", float)
"""Seconds, written in config as "500ms", "5s", "2m", "1h", "1d" or a bare number of seconds."""

Size = NewType("Size", int)
"""Bytes, written as "512", "64K", "2M", "1.5G", "1T" (binary multiples; "KiB" also accepted)."""

Percent = NewType("Percent", float)
"""A percentage, written as "90%" or a bare number."""

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"


def parse_duration(value: object) -> Duration:
    """Given "250ms", "5s", "2m", "1h30m" or a number of seconds, return seconds.

    Raise ValueError with a hint on anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 5s, 2m, got a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return Duration(float(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as 500ms, 5s, 2m, got {type(value).__name__}")
    text = value.strip().lower()
    parts = re.findall(_NUMBER + r"\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(_NUMBER + r"\s*(ms|s|m|h|d)", "", text).strip():
        if re.fullmatch(_NUMBER, text):
            return Duration(float(text))
        raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 5s, 2m, 1h)")
    return Duration(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def parse_size(value: object) -> Size:
    """Given "512", "64K", "2M", "1.5GiB", return bytes (binary multiples); raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512M or 2G, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return Size(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size such as 512M or 2G, got {type(value).__name__}")
    m = re.fullmatch(_NUMBER + r"\s*([KMGT]?)(?:I?B)?", value.strip().upper())
    if not m:
        raise ValueError(f"invalid size {value!r} (use e.g. 512K, 64M, 2G)")
    return Size(int(float(m.group(1)) * _SIZE_UNITS[m.group(2)]))


def parse_percent(value: object) -> Percent:
    """Given "90%", "12.5%" or a number, return the number; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 90%, got a boolean")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(_NUMBER + r"\s*%?", value.strip()):
        number = float(value.strip().rstrip("%"))
    else:
        raise ValueError(f"invalid percentage {value!r} (use e.g. 90%)")
    if number < 0:
        raise ValueError(f"percentage must not be negative, got {value!r}")
    return Percent(number)


def format_duration(seconds: float) -> str:
    """Return a compact human form: 0.25 -> "250ms", 90061 -> "1d 1h 1m"."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m"]
    return " ".join(p for p in parts if p)


def format_size(n: float) -> str:
    """Return bytes in binary units: 1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
