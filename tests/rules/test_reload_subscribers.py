"""Reload subscribers: what a reload removes or changes is forgotten by the parts that cached it."""

from __future__ import annotations

import json
from pathlib import Path

from responder import keys
from tests.conftest import ClientFactory, RulesWriter, Sink, callback_body, signed_headers

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  reply: response
sources:
  api:
    kind: http
    url: ORIGIN/api
    cache_ttl_s: TTL
rules:
  - name: api
    keywords: [api]
    source: api
    msgtype: text
    at_sender: false
    body: "{{ source.data.errmsg }}"
"""


def rules(origin: str, ttl: int) -> str:
    return RULES.replace("ORIGIN", origin).replace("TTL", str(ttl))


async def test_a_source_changed_by_a_reload_loses_its_cache(
    write_rules: RulesWriter, sink: Sink, make_client: ClientFactory
) -> None:
    path: Path = write_rules(rules(sink.origin, 600))
    client = await make_client(path)
    store = client.app[keys.STORE]

    async def ask() -> None:
        response = await client.post(
            "/dingtalk/callback", data=json.dumps(callback_body("api")).encode(), headers=signed_headers()
        )
        assert (await response.json())["text"]["content"] == "ok"

    await ask()
    await ask()
    assert sink.count == 1  # cached for 600 s
    path.write_text(rules(sink.origin, 300), encoding="utf-8")
    assert (await store.reload()).last_ok
    path.write_text(rules(sink.origin, 600), encoding="utf-8")  # the first config again
    assert (await store.reload()).last_ok
    await ask()
    assert sink.count == 2  # its old cache was dropped when the config changed, not kept for ever
