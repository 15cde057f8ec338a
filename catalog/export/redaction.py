"""Secrets kept out of every export: values named like a secret, URL passwords, and the
values of secret environment variables wherever they occur.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from matscreen.tasks.secrets import (
    REDACTED,
    SECRET_WORDS,
    URL_PASSWORD,
    URL_SECRET_QUERY,
    mask_url,
)

_SECRET_NAME = re.compile(rf"(?:^|_){SECRET_WORDS}$", re.IGNORECASE)
_SECRET_KEY_IN_JSON = re.compile(rf'"(?:[^"\\]*_)?{SECRET_WORDS}"\s*:', re.IGNORECASE)
# Shorter values ("1", "true") would be masked wherever they occur in ordinary text.
_MIN_SECRET_LENGTH = 8


def secret_values(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values in the environment that must never appear in an export.

    These are the values of variables named like a secret (``MP_API_KEY``,
    ``PGPASSWORD``, ``…_TOKEN``) and passwords inside URLs (``MATSCREEN_CATALOG_URL``),
    when at least 8 characters long.
    """
    environ = os.environ if environ is None else environ
    found = set()
    for name, value in environ.items():
        if _SECRET_NAME.search(name):
            found.add(value)
        found.update(match.group(2) for match in URL_PASSWORD.finditer(value))
    return {value for value in found if len(value) >= _MIN_SECRET_LENGTH}


def redact(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Mask secrets in ``value`` (recursively through dicts and lists).

    Values under secret-looking keys become ``***``, as do URL passwords, secret URL
    query parameters and every occurrence of one of ``secrets``.
    """
    secrets = sorted(set(secrets), key=len, reverse=True)
    return _redact(value, secrets)


def redact_json(text_: str, secrets: list[str]) -> Any:
    """Parse a stored JSON text and mask its secrets.

    The text is searched first, so that the bulk of a catalog (thousands of structure
    records with nothing to mask) is only parsed, not walked.
    """
    value = json.loads(text_)
    needles = {n for s in secrets for n in (s, json.dumps(s)[1:-1])}
    if (
        URL_PASSWORD.search(text_)
        or URL_SECRET_QUERY.search(text_)
        or _SECRET_KEY_IN_JSON.search(text_)
        or any(n in text_ for n in needles)
    ):
        return _redact(value, secrets)
    return value


def _redact(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_NAME.search(str(k)) and v else _redact(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    if isinstance(value, str):
        value = mask_url(value)
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value
