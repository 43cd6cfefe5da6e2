"""The `http` kind: GET or POST one configured URL and pick fields from the answer.

Message values only ever fill path segments, query values and body values; the scheme, host and
port come from the config and are checked again on every request and redirect.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jmespath.parser import ParsedResult  # type: ignore[import-untyped]
from multidict import CIMultiDict
from yarl import URL

from .base import FetchContext, SourceCall, SourceFetchError
from .outbound import read_capped
from .templating import call_context

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One fully rendered request; equal requests share a cache entry and an upstream call."""

    method: str
    url: URL
    body: bytes | None = None
    content_type: str | None = None


@dataclass(frozen=True, slots=True)
class HttpSpec:
    name: str
    key: str
    base: URL
    path: jinja2.Template
    query: tuple[tuple[str, jinja2.Template], ...]
    headers: Mapping[str, str]
    method: str = "GET"
    json_body: Any = None
    text_body: jinja2.Template | None = None
    response: str = "json"
    pick: ParsedResult | Mapping[str, ParsedResult] | None = None
    max_bytes: int = 256 * 1024
    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()
    follow_redirects: bool = False
    deadline_s: float = 3.0
    cache_ttl_s: float | None = 0.0
    kind: str = "http"

    def prepare(self, call: SourceCall) -> HttpRequest:
        try:
            return self._render(call_context(call))
        except SourceFetchError:
            raise
        except Exception as exc:  # a message can make any template fail (missing arg, bad filter)
            raise SourceFetchError("bad_input") from exc

    def _render(self, context: Mapping[str, Any]) -> HttpRequest:
        url = self.base.with_path(self.path.render(context), encoded=True, keep_query=True)
        url = url.update_query({name: t.render(context) for name, t in self.query})
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            raise SourceFetchError("bad_input")  # unreachable by construction; a tripwire
        if self.json_body is not None:
            body = json.dumps(render_tree(self.json_body, context), ensure_ascii=False)
            return HttpRequest(self.method, url, body.encode(), "application/json")
        if self.text_body is not None:
            body = self.text_body.render(context)
            return HttpRequest(self.method, url, body.encode(), "text/plain; charset=utf-8")
        return HttpRequest(self.method, url)

    async def load(self, ctx: FetchContext, request: HttpRequest) -> Any:
        for _ in range(MAX_REDIRECTS + 1):
            status, location, raw = await self._send(ctx, request)
            if status not in REDIRECT_STATUSES:
                return self._decode(raw)
            request = self._follow(request, status, location)
        raise SourceFetchError("refused_redirect")

    async def _send(self, ctx: FetchContext, request: HttpRequest) -> tuple[int, str | None, bytes]:
        headers = CIMultiDict(self.headers)
        if request.content_type and "content-type" not in headers:
            headers["Content-Type"] = request.content_type
        async with ctx.session.request(
            request.method, request.url, headers=headers, data=request.body, allow_redirects=False
        ) as resp:
            if resp.status in REDIRECT_STATUSES:
                return resp.status, resp.headers.get("Location"), b""
            if not 200 <= resp.status < 300:
                raise SourceFetchError("bad_status")
            return resp.status, None, await read_capped(resp, self.max_bytes)

    def _follow(self, request: HttpRequest, status: int, location: str | None) -> HttpRequest:
        if not self.follow_redirects or not location:
            raise SourceFetchError("refused_redirect")
        try:
            target = request.url.join(URL(location))
        except ValueError as exc:
            raise SourceFetchError("refused_redirect") from exc
        if target.scheme not in ("http", "https") or not self._is_allowed(target):
            log.info("redirect_refused source=%s status=%d", self.name, status)
            raise SourceFetchError("refused_redirect")
        if status == 303 or (status in (301, 302) and request.method == "POST"):
            return HttpRequest("GET", target)
        return HttpRequest(request.method, target, request.body, request.content_type)

    def _is_allowed(self, target: URL) -> bool:
        host = target.raw_host or ""
        return (host, None) in self.allowed_hosts or (host, target.port) in self.allowed_hosts

    def _decode(self, raw: bytes) -> Any:
        if self.response == "text":
            return raw.decode("utf-8", errors="replace")
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise SourceFetchError("bad_response") from exc
        if self.pick is None:
            return document
        if isinstance(self.pick, Mapping):
            return {name: expr.search(document) for name, expr in self.pick.items()}
        return self.pick.search(document)


def render_tree(node: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, jinja2.Template):
        return node.render(context)
    if isinstance(node, Mapping):
        return {key: render_tree(value, context) for key, value in node.items()}
    if isinstance(node, tuple):
        return [render_tree(value, context) for value in node]
    return node
