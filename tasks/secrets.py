"""Secrets in text: how they are recognized and masked wherever matscreen shows a URL.

A secret is a URL's password (``postgresql+psycopg://user:…@host/db``), the value of a
query parameter named like one (``?password=…``, ``?api_key=…``, ``&token=…``), or the
value of a setting named like one (``MP_API_KEY``, ``…_PASSWORD``, ``…_TOKEN``).
"""

from __future__ import annotations

import re

#: What a masked secret reads as.
REDACTED = "***"
#: Words that make a name a secret's name (``MP_API_KEY``, ``db_password``).
SECRET_WORDS = r"(?:password|passwd|secret|token|api_?key|access_?key|private_?key|credentials?)"
#: A URL's user info with a password: group 1 the user, group 2 the password.
URL_PASSWORD = re.compile(r"(?<=://)([^:/?#@\s]*):([^@/?#\s]+)@")
#: A query parameter that holds a secret: group 1 up to ``=``.
URL_SECRET_QUERY = re.compile(
    r"([?&](?:api_?key|apikey|key|token|access_token|password|passwd|secret)=)[^&#\s]+",
    re.IGNORECASE,
)


def mask_url(text: str) -> str:
    """``text`` (a URL, or any text holding URLs) with passwords and secret query values
    replaced by ``***``."""
    text = URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return URL_SECRET_QUERY.sub(rf"\1{REDACTED}", text)
