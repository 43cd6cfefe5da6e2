"""Schedules in the running app: `every: 1s` fires into the right conversation with the rendered
template, through the local fake OpenAPI, once per slot; a reload keeps an unchanged schedule's
timing and retimes a changed one; /-/status and the metrics show them."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from responder import keys
from responder.schedule.service import SCHEDULER
from tests.conftest import ClientFactory, RulesWriter, eventually
from tests.fake_openapi import APP_KEY, APP_SECRET, Fault

ENV = {"CLIENT_ID": APP_KEY, "CLIENT_SECRET": APP_SECRET}
RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  client_id: ${CLIENT_ID}
  client_secret: ${CLIENT_SECRET}
  api_base: API
rules:
  - {name: help, keywords: help, msgtype: text, body: help}
schedules:
  - name: tick
    every: 1s
    timezone: Asia/Shanghai
    to: [{conversation: cid-ops}, {user: manager01}]
    msgtype: markdown
    title: Tick
    body: "#### {{ schedule.name }} {{ schedule.slot.strftime('%H:%M:%S %Z') }} {{ bot.name }}"
  - name: weekly
    cron: "0 9 * * 1"
    to: [{conversation: cid-ops}]
    msgtype: text
    body: Weekly reminder
"""


@pytest.fixture
async def client(write_rules: RulesWriter, openapi: Any, make_client: ClientFactory) -> TestClient:
    path: Path = write_rules(RULES.replace("API", openapi.base))
    return await make_client(path, ENV)


async def test_every_second_fires_into_the_right_conversations_with_the_rendered_template(
    client: TestClient, openapi: Any
) -> None:
    await openapi.wait_for(lambda: len(openapi.sends) >= 4)
    first_two = openapi.sends[:2]
    group = next(s for s in first_two if "openConversationId" in s.body)
    person = next(s for s in first_two if "userIds" in s.body)
    assert group.body["openConversationId"] == "cid-ops" and person.body["userIds"] == ["manager01"]
    assert group.body["msgKey"] == "sampleMarkdown" and group.msg_param == person.msg_param
    text = group.msg_param["text"]
    assert text.startswith("#### tick ") and text.endswith(" CST responder")
    slot = datetime.datetime.strptime(text.split()[2], "%H:%M:%S")
    later = datetime.datetime.strptime(openapi.sends[2].msg_param["text"].split()[2], "%H:%M:%S")
    assert (later - slot).seconds in (1, 2)  # whole-second slots, each sent once per target
    assert len({s.msg_param["text"] for s in openapi.sends[:4]}) == 2


async def test_status_and_metrics_show_each_schedule(client: TestClient, openapi: Any) -> None:
    await eventually(lambda: _status(client)["tick"]["last_result"] == "sent")
    status = _status(client)
    assert status["tick"]["timing"] == "every 1s Asia/Shanghai"
    assert status["weekly"]["last_result"] is None
    assert datetime.datetime.fromisoformat(status["weekly"]["next_fire"]).strftime("%a %H:%M") == "Mon 09:00"
    exposition = client.app[keys.METRICS].exposition().decode()
    assert 'responder_schedule_fires_total{result="sent",schedule="tick"}' in exposition
    assert 'responder_schedule_next_fire_timestamp_seconds{schedule="weekly"}' in exposition


async def test_a_refused_send_is_the_slots_result_and_the_next_slot_still_fires(
    client: TestClient, openapi: Any
) -> None:
    openapi.inject(Fault.QUOTA_EXHAUSTED, times=1)
    await eventually(lambda: _status(client)["tick"]["counts"].get("dropped", 0) == 1)
    assert _status(client)["tick"]["last_result"].startswith("dropped:openapi_quota")
    await eventually(lambda: _status(client)["tick"]["counts"].get("sent", 0) >= 1)


async def test_a_reload_keeps_an_unchanged_schedule_and_drops_a_removed_one(
    client: TestClient, openapi: Any, write_rules: RulesWriter
) -> None:
    before = _status(client)["weekly"]["next_fire"]
    text = RULES.replace("API", openapi.base).replace("every: 1s", "every: 1h")
    write_rules(text)
    await client.app[keys.STORE].reload()
    status = _status(client)
    assert status["weekly"]["next_fire"] == before
    assert status["tick"]["timing"] == "every 1h Asia/Shanghai"
    write_rules(text.split("  - name: weekly")[0])
    await client.app[keys.STORE].reload()
    assert list(_status(client)) == ["tick"]


def _status(client: TestClient) -> dict[str, Any]:
    return {entry["name"]: entry for entry in client.app[SCHEDULER].status()}
