"""URLs as they may be shown: query values that can hold credentials masked. Pure."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = ("apikey", "api_key", "key", "token", "access_token", "password", "secret", "jwt")


def masked_url(url: str) -> str:
    """``url`` with secret-looking query values and any userinfo replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2] if "@" in parts.netloc else parts.netloc
    query = [
        (k, "***" if any(word in k.lower() for word in _SECRET_PARAMS) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), ""))


def secret_values(url: str) -> list[str]:
    """The values :func:`masked_url` hides, to scrub them from a library's log lines."""
    parts = urlsplit(url)
    found = [
        v
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if v and any(word in k.lower() for word in _SECRET_PARAMS)
    ]
    if "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
    return found


def is_loopback(url: str) -> bool:
    """True when the URL's host is this machine (127.0.0.0/8, ::1, localhost)."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")
