"""HTTP for sources that speak JSON over plain GET (AFLUX, OPTIMADE): retries and clear errors.

Transient failures — connection errors, timeouts, 429 and 5xx answers, a body cut short —
are retried with exponential backoff; a ``Retry-After`` header (seconds or an HTTP date)
is honoured. Anything else (400, 401, 403, 404 …) is permanent and raised at once as a
:class:`SourceError` naming the URL, never a credential.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from matscreen.tasks.errors import SourceError
from matscreen.tasks.secrets import mask_url

log = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried."""

    attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_backoff_s)
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def is_transient(status: int | None) -> bool:
    """Whether an HTTP status may pass if the request is made again (429, 5xx …): the one
    transient-error check of every remote source; transport errors (a refused or dropped
    connection, a timeout) and a body cut short are transient too."""
    return status in TRANSIENT_STATUS


class Transient(SourceError):
    """One attempt failed in a way that may pass if asked again (see :func:`with_retries`,
    which never lets it out).

    Attributes
    ----------
    problem
        What happened, without secrets (logged and, after the last attempt, reported).
    retry_after
        Seconds the server asked to wait (``Retry-After``), if it did.
    """

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


def with_retries(
    source: str,
    where: str,
    attempt: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` until it returns, retrying each :class:`Transient` failure.

    The one retry loop of every remote source: each failed attempt is logged with the
    delay before the next (``policy``: exponential backoff, ``Retry-After`` honoured,
    capped); any other exception (a permanent failure) goes up at once.

    Raises
    ------
    SourceError
        When every attempt failed transiently, naming the source, ``where`` (a URL without
        credentials, or a description of the request) and the last problem.
    """
    problem = ""
    for number in range(1, policy.attempts + 1):
        try:
            return attempt()
        except Transient as failed:
            problem, retry_after = failed.problem, failed.retry_after
        if number == policy.attempts:
            break
        delay = policy.delay(number, retry_after)
        log.warning(
            "source %s: %s failed (%s); retry %d/%d in %.1f s",
            source,
            where,
            problem,
            number,
            policy.attempts - 1,
            delay,
        )
        sleep(delay)
    raise SourceError(f"source {source}: {where} failed {policy.attempts} times; last: {problem}")


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header: delay seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def redact(url: str) -> str:
    """Return ``url`` without user info, and with query values that could hold a secret
    (``api_key``, ``token`` …) masked."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return mask_url(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))


class JsonClient:
    """GET JSON documents with retries; one ``httpx.Client`` per source read.

    Parameters
    ----------
    source
        The source's name, used in every error message.
    policy
        Retry policy for transient failures.
    timeout_s
        Per-request timeout.
    sleep
        Function used to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        source: str,
        policy: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        self.client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=True,
            headers={"Accept": "application/json", **(headers or {})},
        )

    def __enter__(self) -> JsonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``url`` and return its parsed JSON body.

        Raises
        ------
        SourceError
            On a permanent HTTP error, or when every attempt failed transiently; the message
            names the source, the URL and the last problem.
        """
        shown = redact(url)

        def attempt() -> Any:
            try:
                response = self.client.get(url, params=params)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                raise Transient(f"{type(exc).__name__}: {exc}") from exc
            if is_transient(response.status_code):
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                raise Transient(f"HTTP {response.status_code}", retry_after)
            if response.status_code >= 400:
                raise SourceError(
                    f"source {self.source}: {shown} answered HTTP {response.status_code}: "
                    f"{_detail(response)}"
                )
            try:
                return json.loads(response.content)
            except ValueError as exc:  # body cut short or not JSON: ask again
                raise Transient(f"invalid JSON ({exc})") from exc

        return with_retries(self.source, shown, attempt, self.policy, self.sleep)


def _detail(response: httpx.Response) -> str:
    """A short, secret-free description of an error response's body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("detail") or errors[0].get("title") or errors[0])[:200]
        for key in ("detail", "message", "error"):
            if key in body:
                return str(body[key])[:200]
    return str(body)[:200]
