"""Redis URLs in rules.yaml's `state.url`: what is wrong with one, its password, and a form safe
to show. Pure string work (no redis import): `check` and the compiler use it.

Nothing here ever puts the URL itself in a message: it may carry a password.
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

SCHEMES = ("redis", "rediss")


def url_problem(url: str) -> str | None:
    """Why `url` cannot reach a Redis server, in words that never repeat the URL; None if it can."""
    parts = _split(url)
    if parts is None:
        return "is not a valid URL (check the port and any [ ] around an IPv6 address)"
    if parts.scheme not in SCHEMES:
        return "must start with redis:// or rediss:// (TLS)"
    if not parts.hostname:
        return "names no host: write redis://HOST[:PORT][/DB]"
    database = parts.path.lstrip("/")
    if database and not database.isdigit():
        return "has a path that is not a database number (redis://HOST:PORT/0)"
    if parts.query or parts.fragment:
        # rediss:// verifies the server against the system's CA certificates (SSL_CERT_FILE
        # names another bundle), so no connection option needs to travel in the URL.
        return "must not have ?options or a #fragment"
    return None


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # .port itself raises for text or numbers past 65535
            return None
    except ValueError:
        return None
    return parts


def url_password(url: str) -> str:
    """The password in `url`'s user-info, decoded ("" if none): a secret to keep out of logs."""
    try:
        return unquote(urlsplit(url).password or "")
    except ValueError:
        return ""


def display_url(url: str) -> str:
    """`url` without its user-info and query: scheme, host, port and database, for status and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
