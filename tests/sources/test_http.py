"""The one retry loop of the remote sources."""

from __future__ import annotations

import pytest

from matscreen.tasks.errors import SourceError
from matscreen.tasks.sources.http import RetryPolicy, Transient, is_transient, with_retries


def test_transient_failures_are_retried_with_backoff_and_retry_after() -> None:
    waits: list[float] = []
    answers = iter([Transient("HTTP 503"), Transient("HTTP 429", retry_after=7.0), "page"])

    def attempt() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = RetryPolicy(attempts=5, backoff_s=0.5, max_backoff_s=60.0)
    assert with_retries("mp", "page 3", attempt, policy, waits.append) == "page"
    assert waits == [0.5, 7.0]  # exponential backoff, then the server's Retry-After


def test_permanent_failures_pass_at_once_and_the_last_transient_one_is_named() -> None:
    waits: list[float] = []

    def refused() -> None:
        raise SourceError("source mp: the key was refused (HTTP 401)")

    with pytest.raises(SourceError, match="refused"):
        with_retries("mp", "page 1", refused, RetryPolicy(attempts=4), waits.append)
    assert waits == []

    def down() -> None:
        raise Transient("ConnectError: connection refused")

    policy = RetryPolicy(attempts=3, backoff_s=1.0, max_backoff_s=1.5)
    with pytest.raises(SourceError) as raised:
        with_retries("aflow", "http://127.0.0.1:1/search", down, policy, waits.append)
    assert not isinstance(raised.value, Transient)
    assert str(raised.value) == (
        "source aflow: http://127.0.0.1:1/search failed 3 times; "
        "last: ConnectError: connection refused"
    )
    assert waits == [1.0, 1.5]  # capped


def test_which_statuses_are_transient() -> None:
    assert all(is_transient(s) for s in (408, 425, 429, 500, 502, 503, 504))
    assert not any(is_transient(s) for s in (200, 400, 401, 403, 404, None))
