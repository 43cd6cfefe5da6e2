"""One HTTP exchange with DingTalk's OpenAPI: POST a JSON body, get back the status and body, or
a failure that says whether the request can have reached DingTalk. It neither reads the answer
nor retries; `openapi` does that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from responder.dingtalk import dumps
from responder.dingtalk import openapi as wire

MAX_ANSWER_BYTES = 64 * 1024
# A fresh connection per call: a pooled one that DingTalk closed while idle fails only once the
# request is written, which looks exactly like a reset after delivery (ambiguous; aiohttp never
# retries a POST). Fresh, a failure to connect is definite. Calls are few (the monthly quota is
# thousands), so the extra handshakes cost little.
JSON_HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Accept": "application/json",
    "Connection": "close",
}


@dataclass(frozen=True, slots=True)
class Answer:
    """A status and body, or the failure that left none."""

    status: int = 0
    body: bytes = b""
    failure: str = ""  # timeout, connect_timeout, connection_failed, connection_lost, bad_answer
    definite: bool = True  # for a failure: the request never reached DingTalk

    @property
    def accepted(self) -> bool:
        return not self.failure and 200 <= self.status < 300

    @property
    def error(self) -> wire.ApiError | None:
        if self.failure or self.accepted:
            return None
        return wire.classify_error(self.status, self.body)

    @property
    def result(self) -> str:
        """How the calls metric labels this exchange: ok, an ErrorKind or the failure."""
        error = self.error
        return self.failure or (error.kind.value if error is not None else "ok")


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    timeout: aiohttp.ClientTimeout,
    token: str | None = None,
) -> Answer:
    """POST `body`, with the access token header if `token` is given; never follows a redirect
    and never raises for the network. Give `timeout` a `connect` part shorter than `total`:
    only aiohttp's ConnectionTimeoutError proves that nothing was sent."""
    headers = JSON_HEADERS if token is None else {**JSON_HEADERS, wire.TOKEN_HEADER: token}
    try:
        async with session.post(
            url, data=dumps(body), headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            return Answer(response.status, await _read_capped(response.content))
    # Order matters: ConnectionTimeoutError is a TimeoutError, ClientConnectorError a ClientError.
    except aiohttp.ConnectionTimeoutError:
        return Answer(failure="connect_timeout")
    except aiohttp.ClientConnectorError:
        return Answer(failure="connection_failed")
    except TimeoutError:
        return Answer(failure="timeout", definite=False)
    except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError):
        return Answer(failure="connection_lost", definite=False)


async def _read_capped(content: aiohttp.StreamReader) -> bytes:
    """The body up to MAX_ANSWER_BYTES; a single `read(n)` may stop at the first chunk."""
    chunks: list[bytes] = []
    size = 0
    while size < MAX_ANSWER_BYTES:
        chunk = await content.read(MAX_ANSWER_BYTES - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
