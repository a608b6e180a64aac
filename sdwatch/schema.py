"""Build frozen dataclasses from parsed TOML, rejecting unknown keys and naming the key at fault.

The config loader and every probe's Spec use this one mechanism, so a dataclass's fields
(with their defaults and type hints) are the whole schema.  Supported field types: str, int,
float, bool, Duration, Size, Percent, enums, nested dataclasses, ``tuple[X, ...]``,
``Optional[X]`` and ``X | None``.  A dataclass may validate across fields in ``__post_init__``
by raising :class:`SpecError` (naming the key) or ValueError (about the table as a whole).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import types
import typing
from typing import Any, Mapping, TypeVar

from sdwatch.quantities import Duration, Percent, Size, parse_duration, parse_percent, parse_size

T = TypeVar("T")

_PARSERS = {Duration: parse_duration, Size: parse_size, Percent: parse_percent}


class SpecError(ValueError):
    """A value is wrong; ``key`` is its dotted path relative to the table being built."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def join(prefix: str, key: str | int) -> str:
    """Join key paths the way TOML writes them: a.b, a."x.service", a[0]."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    part = key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'
    return f"{prefix}.{part}" if prefix else part


def build(cls: type[T], data: object, key: str = "") -> T:
    """Given a dataclass type and a TOML table, return an instance.

    Raise SpecError naming the key at fault."""
    if not isinstance(data, Mapping):
        raise SpecError(key, f"expected a table, got {_describe(data)}")
    hints, names = _schema_of(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        allowed = ", ".join(sorted(names))
        raise SpecError(join(key, unknown[0]), f"unknown key (allowed here: {allowed})")
    values: dict[str, Any] = {}
    for toml_name, field in names.items():
        if toml_name in data:
            values[field.name] = convert(hints[field.name], data[toml_name],
                                         join(key, toml_name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SpecError(join(key, toml_name), "required key is missing")
    try:
        return cls(**values)
    except SpecError as exc:
        raise SpecError(join(key, exc.key) if exc.key else key, exc.message) from None
    except ValueError as exc:
        raise SpecError(key, str(exc)) from None


def convert(hint: Any, value: object, key: str) -> Any:
    """Convert one TOML value to the Python type ``hint``; raise SpecError naming ``key``."""
    origin, args = _shape(hint)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(args, value, key)
    if hint is Any:
        return value
    if origin in (dict, Mapping, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise SpecError(key, f"expected a table, got {_describe(value)}")
        return dict(value)
    if origin is tuple:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value stands for a list of one
        if not isinstance(value, list):
            raise SpecError(key, f"expected a list, got {_describe(value)}")
        return tuple(convert(args[0], item, join(key, i)) for i, item in enumerate(value))
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(key, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if hint in _PARSERS:
        try:
            return _PARSERS[hint](value)
        except ValueError as exc:
            raise SpecError(key, str(exc)) from None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        choices = [m.value for m in hint]
        if value not in choices:
            raise SpecError(key, f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return hint(value)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    return _convert_scalar(hint, value, key)


def _convert_union(args: tuple[Any, ...], value: object, key: str) -> Any:
    """The first option of a union that takes ``value``; None where the union allows it."""
    options = [a for a in args if a is not type(None)]
    if value is None and len(options) < len(args):
        return None
    errors: list[SpecError] = []
    for option in options:
        try:
            return convert(option, value, key)
        except SpecError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]  # keeps the deeper key, e.g. cpu.for
    raise SpecError(key, "; or ".join(e.message for e in errors))


def _convert_scalar(hint: Any, value: object, key: str) -> Any:
    """bool, int, float or str, strictly (TOML's true is no number, 1 no boolean)."""
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(key, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(key, f"expected a whole number, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(key, f"expected a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(key, f"expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"schema: unsupported field type {hint!r} at {key}")


@functools.cache
def _schema_of(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """Type hints and TOML key -> field of a dataclass, computed once per class.

    typing.get_type_hints evaluates string annotations: far too slow to repeat per table.
    """
    fields = [f for f in dataclasses.fields(cls) if f.init]
    return typing.get_type_hints(cls), {_toml_name(f): f for f in fields}


_SHAPES: dict[int, tuple[Any, Any, tuple[Any, ...]]] = {}


def _shape(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """typing's origin and arguments of a hint, once per hint: a config has thousands of values.

    Keyed by the hint object itself, not by equality: ``int | float`` equals ``float | int``
    but tries its options in another order (and 5 stays an int, or becomes 5.0)."""
    found = _SHAPES.get(id(hint))
    if found is None or found[0] is not hint:  # the entry holds the hint, so its id stays its
        found = _SHAPES[id(hint)] = (hint, typing.get_origin(hint), typing.get_args(hint))
    return found[1], found[2]


def _toml_name(field: dataclasses.Field) -> str:
    """A field's key in TOML: metadata 'toml' when the key is a Python keyword (e.g. 'for')."""
    return field.metadata.get("toml", field.name)


def _describe(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value!r}"
    return f"{type(value).__name__} {value!r}"
