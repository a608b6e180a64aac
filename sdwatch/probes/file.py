"""file: a path exists, was modified recently enough, and has a plausible size.

stat() is fast and local, so this probe runs it inline: no thread, no await.
"""

from __future__ import annotations

import os
import stat as statmod
import time
from dataclasses import dataclass
from typing import Mapping, Optional

from sdwatch.probes.errors import CheckFailed, Metric, stage
from sdwatch.quantities import Duration, Size, format_duration, format_size
from sdwatch.schema import SpecError


@dataclass(frozen=True)
class Spec:
    """path: absolute path (followed if a symlink); max_age: on mtime; min_size/max_size."""

    path: str
    max_age: Optional[Duration] = None
    min_size: Optional[Size] = None
    max_size: Optional[Size] = None

    def __post_init__(self) -> None:
        if not os.path.isabs(self.path):
            raise SpecError("path", f"must be absolute, got {self.path!r}")
        if None not in (self.min_size, self.max_size) and self.min_size > self.max_size:  # type: ignore[operator]
            raise SpecError("min_size", "is larger than max_size")


async def probe(spec: Spec) -> Mapping[str, Metric]:
    """Given a Spec, stat the path; return metrics (age, size); raise CheckFailed."""
    stage(f"stat {spec.path}")
    try:
        st = os.stat(spec.path)
    except FileNotFoundError:
        raise CheckFailed(f"{spec.path}: no such file") from None
    except OSError as exc:
        raise CheckFailed(f"{spec.path}: {exc.strerror}") from None
    age = max(0.0, time.time() - st.st_mtime)
    metrics: dict[str, Metric] = {"age": round(age, 3), "size": st.st_size}
    if spec.max_age is not None and age > spec.max_age:
        raise CheckFailed(
            f"modified {format_duration(age)} ago (max {format_duration(spec.max_age)})", metrics
        )
    if not statmod.S_ISDIR(st.st_mode):  # a directory's size says nothing about its content
        if spec.min_size is not None and st.st_size < spec.min_size:
            raise CheckFailed(f"size {format_size(st.st_size)} below {format_size(spec.min_size)}",
                              metrics)
        if spec.max_size is not None and st.st_size > spec.max_size:
            raise CheckFailed(f"size {format_size(st.st_size)} above {format_size(spec.max_size)}",
                              metrics)
    return metrics
