"""The `http` kind: GET or POST one configured URL and pick fields from the answer.

Message values only ever fill path segments, query values and body values; the scheme, host and
port come from the config and are checked again on every request and redirect.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import jinja2
import jmespath  # type: ignore[import-untyped]
from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]
from jmespath.parser import ParsedResult  # type: ignore[import-untyped]
from multidict import CIMultiDict
from yarl import URL

from .base import FetchContext, SourceCall, SourceConfigError, SourceFetchError
from .outbound import check_origin, read_capped
from .templating import call_context, compile_template, path_environment, value_environment

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
URL_PARTS = re.compile(
    r"^(?P<origin>[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)$"
)
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


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


def compile_tree(env: jinja2.Environment, node: Any, path: tuple[str | int, ...]) -> Any:
    """Freeze a JSON body, compiling every string leaf as a template."""
    if isinstance(node, str):
        return compile_template(env, node, path)
    if isinstance(node, Mapping):
        items = {k: compile_tree(env, v, (*path, k)) for k, v in node.items()}
        return MappingProxyType(items)
    if isinstance(node, list | tuple):
        return tuple(compile_tree(env, v, (*path, i)) for i, v in enumerate(node))
    return node


def split_url(url: str) -> tuple[URL, str]:
    """Return (origin + static query, path template); raises SourceConfigError."""
    match = URL_PARTS.match(url)
    if match is None:
        raise SourceConfigError(("url",), "must be an absolute http(s) URL")
    if re.search(r"[{}]", match["origin"] + match["rest"]):
        raise SourceConfigError(
            ("url",), "templates may only appear in the path; use `query:` for query values"
        )
    problem = check_origin(match["origin"] + "/")
    if problem:
        raise SourceConfigError(("url",), problem)
    base = URL(match["origin"] + "/" + match["rest"]).with_fragment(None)
    return base, match["path"] or "/"


def compile_path(path: str) -> jinja2.Template:
    """Encode the literal parts now; expressions are encoded whole at render time."""
    pieces = re.split(r"(\{\{.*?\}\})", path)
    if any(re.search(r"[{}]", p) for p in pieces[::2]):
        raise SourceConfigError(("url",), "only {{ expressions }} are allowed in the URL path")
    literal = "!$&'()*+,;=:@/%-._~"
    source = "".join(p if i % 2 else quote(p, safe=literal) for i, p in enumerate(pieces))
    return compile_template(path_environment(), source, ("url",))


def compile_pick(pick: Any) -> ParsedResult | Mapping[str, ParsedResult] | None:
    if pick is None:
        return None
    if isinstance(pick, str):
        return _compile_jmespath(pick, ("pick",))
    return MappingProxyType({k: _compile_jmespath(v, ("pick", k)) for k, v in pick.items()})


def _compile_jmespath(expression: str, path: tuple[str | int, ...]) -> ParsedResult:
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise SourceConfigError(path, f"bad JMESPath expression {expression!r}") from exc


def check_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    for name, value in headers.items():
        if not HEADER_NAME.match(name) or name.lower() in FORBIDDEN_HEADERS:
            raise SourceConfigError(("headers", name), f"header {name!r} may not be set")
        if "\r" in str(value) or "\n" in str(value):
            raise SourceConfigError(("headers", name), "header values may not contain newlines")
    return MappingProxyType({name: str(value) for name, value in headers.items()})


def check_body(config: Mapping[str, Any], method: str) -> None:
    if "json" in config and "body" in config:
        raise SourceConfigError(("body",), "give either body or json, not both")
    if method == "GET" and ("json" in config or "body" in config):
        raise SourceConfigError(("method",), "a request body needs method: POST")
    if config.get("response", "json") == "text" and "pick" in config:
        raise SourceConfigError(("pick",), "pick needs response: json")


def compile_http(name: str, key: str, config: Mapping[str, Any]) -> HttpSpec:
    method = config.get("method", "GET")
    check_body(config, method)
    base, path = split_url(config["url"])
    env = value_environment()
    query = config.get("query") or {}
    return HttpSpec(
        name=name,
        key=key,
        base=base,
        path=compile_path(path),
        query=tuple((k, compile_template(env, str(v), ("query", k))) for k, v in query.items()),
        headers=check_headers(config.get("headers") or {}),
        method=method,
        json_body=compile_tree(env, config["json"], ("json",)) if "json" in config else None,
        text_body=compile_template(env, config["body"], ("body",)) if "body" in config else None,
        response=config.get("response", "json"),
        pick=compile_pick(config.get("pick")),
        max_bytes=int(config.get("max_bytes", 256 * 1024)),
        allowed_hosts=allowed_hosts(config.get("allowed_hosts"), base),
        follow_redirects=bool(config.get("follow_redirects", False)),
        deadline_s=float(config.get("timeout_s", 3)),
        cache_ttl_s=float(config.get("cache_ttl_s", 0)),
    )


def allowed_hosts(hosts: list[str] | None, base: URL) -> frozenset[tuple[str, int | None]]:
    """Redirect targets as (IDNA host, port or None for any port); default: the URL's origin."""
    if not hosts:
        return frozenset({(base.raw_host or "", base.port)})
    return frozenset(_host_and_port(h) for h in hosts)


def _host_and_port(entry: str) -> tuple[str, int | None]:
    try:
        url = URL(f"http://{entry}")
    except ValueError as exc:
        raise SourceConfigError(("allowed_hosts",), f"{entry!r} is not a host[:port]") from exc
    return url.raw_host or "", url.explicit_port
