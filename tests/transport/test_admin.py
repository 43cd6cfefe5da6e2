"""The admin endpoints: status, metrics, readiness and the opt-in reload trigger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from responder.app import create_app
from responder.rules.load import load_rules
from responder.rules.store import Reloader, RuleStore
from responder.transport.admin import create_admin_app
from responder.transport.loopback import is_loopback
from tests.conftest import SECRET, RulesWriter

RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
rules:
  - name: hello
    keywords: [hello]
    msgtype: text
    body: "BODY"
"""
ENV = {"DINGTALK_APP_SECRET": SECRET}


@pytest.fixture
def rules_path(write_rules: RulesWriter) -> Path:
    return write_rules(RULES.replace("BODY", "v1"))


async def admin_client(aiohttp_client, rules_path: Path, *, reload_endpoint: bool):  # type: ignore[no-untyped-def]
    store = RuleStore(load_rules(rules_path, ENV), ENV)
    main = create_app(store)
    reloader = Reloader(store)
    admin = create_admin_app(main, reloader if reload_endpoint else None)

    async def run_reloader(app):  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(reloader.run())
        yield
        task.cancel()

    admin.cleanup_ctx.append(run_reloader)
    return await aiohttp_client(admin), store


async def test_reload_endpoint_reloads_and_reports(aiohttp_client, rules_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, store = await admin_client(aiohttp_client, rules_path, reload_endpoint=True)
    rules_path.write_text(RULES.replace("BODY", "v2"))
    response = await client.post("/-/reload")
    assert response.status == 200
    body = await response.json()
    assert (body["generation"], body["last_reload_ok"]) == (2, True)
    assert store.status.generation == 2

    rules_path.write_text("rules: [")
    response = await client.post("/-/reload")
    assert response.status == 422
    body = await response.json()
    assert body["last_reload_ok"] is False
    assert body["problems"][0]["line"] == 1
    status = await (await client.get("/-/status")).json()
    assert status["generation"] == 2 and status["last_error"].startswith(str(rules_path))


async def test_reload_endpoint_is_off_by_default(aiohttp_client, rules_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = await admin_client(aiohttp_client, rules_path, reload_endpoint=False)
    assert (await client.post("/-/reload")).status in (404, 405)


async def test_metrics_and_readiness(aiohttp_client, rules_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = await admin_client(aiohttp_client, rules_path, reload_endpoint=False)
    metrics = await (await client.get("/metrics")).text()
    assert "responder_rules_last_reload_successful 1.0" in metrics
    assert "responder_rules_loaded 1.0" in metrics
    assert (await client.get("/-/ready")).status == 200
    assert (await client.get("/-/healthy")).status == 200


def test_reload_is_refused_to_other_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("[::1]")
    assert not is_loopback("10.0.0.5") and not is_loopback(None) and not is_loopback("unix")
