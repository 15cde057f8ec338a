"""What provenance needs to know about one task run, captured around a plain function.

``traced(fn)`` returns a function with the same arguments that returns
``Traced(value, RunInfo)``: the value plus when and where it was computed and, inside
Prefect, the task run id. The flow's driver turns the RunInfo into a catalog activity.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


def utc_now() -> str:
    """Return the current UTC time as an ISO 8601 string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class RunInfo:
    """When, where and as which Prefect task run a function ran."""

    name: str
    started_at: str
    ended_at: str
    host: str
    pid: int
    task_run_id: str | None = None


@dataclass(frozen=True)
class Traced(Generic[T]):
    """A task's value together with its :class:`RunInfo`."""

    value: T
    run: RunInfo


def _current_task_run_id() -> str | None:
    from prefect.runtime import task_run

    run_id: Any = task_run.id
    return str(run_id) if run_id else None


def traced(fn: Callable[P, T]) -> Callable[P, Traced[T]]:
    """Wrap ``fn`` so that it also reports when, where and as which task run it ran."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Traced[T]:
        started = utc_now()
        value = fn(*args, **kwargs)
        info = RunInfo(
            name=fn.__name__,
            started_at=started,
            ended_at=utc_now(),
            host=socket.gethostname(),
            pid=os.getpid(),
            task_run_id=_current_task_run_id(),
        )
        return Traced(value, info)

    return wrapper


class StepTimer:
    """Wall-clock seconds of named steps, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block and add its duration to ``seconds[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
