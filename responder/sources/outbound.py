"""Outbound HTTP plumbing shared by the public_ip and http kinds: capped reads, error codes.

Owns no state and opens no sessions; the SourceHub's shared ClientSession is passed in.
"""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from .base import SourceFetchError

READ_CHUNK_BYTES = 16 * 1024


async def read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read the body, but never more than `max_bytes` (+1 chunk): raises 'too_large' past it."""
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise SourceFetchError("too_large")
    body = bytearray()
    while chunk := await resp.content.read(min(READ_CHUNK_BYTES, max_bytes + 1)):
        body += chunk
        if len(body) > max_bytes:
            raise SourceFetchError("too_large")
    return bytes(body)


def error_code(exc: BaseException) -> str:
    """Map a transport exception to a user-safe code; the upstream text is never kept."""
    if isinstance(exc, SourceFetchError):
        return exc.code
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return "unavailable"


# Everything a request can raise that means "this upstream did not answer properly".
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


def check_origin(text: str) -> str | None:
    """Return a problem with a configured absolute URL, or None if it is usable."""
    try:
        url = URL(text)
    except (TypeError, ValueError):
        return "is not a valid URL"
    if url.scheme not in ("http", "https") or not url.host:
        return "must be an absolute http(s) URL"
    if url.user is not None or url.password is not None:
        return "must not carry user:password (send credentials in headers)"
    return None
