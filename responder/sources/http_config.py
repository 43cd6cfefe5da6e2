"""Load-time half of the `http` kind: split and check the URL, compile templates and JMESPath.

Everything here runs once per rules load and raises SourceConfigError; nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import jinja2
import jmespath  # type: ignore[import-untyped]
from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]
from jmespath.parser import ParsedResult  # type: ignore[import-untyped]
from yarl import URL

from .base import SourceConfigError
from .http import HttpSpec
from .outbound import check_origin
from .templating import compile_template, path_environment, value_environment

FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
URL_PARTS = re.compile(r"^(?P<origin>[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)$")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


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
