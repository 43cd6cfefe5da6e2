"""POST /push/NAME: an Alertmanager or CI payload with the push's bearer token is rendered from
the rules' templates and sent into the group through DingTalk's OpenAPI (a local fake); anything
else is refused with a reason and sends nothing."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from responder import keys
from tests.conftest import ROOT, ClientFactory, RulesWriter, pipeline
from tests.fake_openapi import APP_KEY, APP_SECRET, Fault

TOKEN = "alert-token-0123456789"
CI_TOKEN = "ci-token-0123456789abc"
ENV = {
    "CLIENT_ID": APP_KEY,
    "CLIENT_SECRET": APP_SECRET,
    "ALERTMANAGER_TOKEN": TOKEN,
    "ALERTMANAGER_CONVERSATION": "cid-ops",
    "CI_TOKEN": CI_TOKEN,
    "CI_CONVERSATION": "cid-dev",
    "DINGTALK_CLIENT_ID": APP_KEY,
    "DINGTALK_CLIENT_SECRET": APP_SECRET,
}
RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  client_id: ${CLIENT_ID}
  client_secret: ${CLIENT_SECRET}
  api_base: API
rules:
  - name: help
    keywords: [help]
    msgtype: text
    body: help
pushes:
  - name: alerts
    token: ${ALERTMANAGER_TOKEN}
    to: [{conversation: cid-default}]
    match:
      - when: {commonLabels.severity: [critical, page]}
        to: [{conversation: cid-oncall}, {user: manager01}]
    msgtype: markdown
    title: "{{ payload.status }}"
    body: "#### {{ payload.status }}: {{ payload.commonLabels.alertname }}"
  - name: disabled
    token: ""
    to: [{conversation: cid-default}]
    msgtype: text
    body: never
"""


def alert(severity: str = "warning", status: str = "firing", name: str = "HighLatency") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": "{}:{alertname=" + json.dumps(name) + "}",
        "status": status,
        "receiver": "dingtalk",
        "commonLabels": {"alertname": name, "severity": severity},
        "alerts": [{"status": status, "labels": {"alertname": name, "severity": severity}}],
    }


@pytest.fixture
async def client(write_rules: RulesWriter, openapi: Any, make_client: ClientFactory) -> TestClient:
    path: Path = write_rules(RULES.replace("API", openapi.base))
    return await make_client(path, ENV)


async def push(
    client: TestClient,
    name: str,
    body: Any,
    token: str | None = TOKEN,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = io.BytesIO(body if isinstance(body, bytes) else json.dumps(body).encode())
    response = await client.post(f"/push/{name}", data=data, headers=headers)
    answer = await response.json()
    await pipeline(client).wait_idle()
    return response.status, answer


async def test_an_alertmanager_payload_with_the_token_arrives_in_the_group(
    client: TestClient, openapi: Any
) -> None:
    assert await push(client, "alerts", alert()) == (202, {"accepted": 1, "targets": 1})
    (send,) = openapi.sends
    assert send.path == "/v1.0/robot/groupMessages/send"
    assert send.body["openConversationId"] == "cid-default" and send.body["robotCode"] == APP_KEY
    assert (send.body["msgKey"], send.msg_param) == (
        "sampleMarkdown",
        {"title": "firing", "text": "#### firing: HighLatency"},
    )


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
async def test_without_the_token_it_is_a_401_and_nothing_is_sent(
    client: TestClient, openapi: Any, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.post("/push/alerts", data=json.dumps(alert()).encode(), headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": "unauthorized", "reason": "unauthorized"}
    await pipeline(client).wait_idle()
    assert openapi.calls == []


async def test_a_valid_token_for_an_unknown_name_is_a_404_and_an_unknown_token_a_401(
    client: TestClient, openapi: Any
) -> None:
    assert await push(client, "nope", alert()) == (404, {"error": "not_found", "reason": "unknown push"})
    # Without a valid token nobody learns which names exist.
    assert (await push(client, "nope", alert(), token="guess-0123456789abcdef"))[0] == 401
    assert openapi.calls == []


async def test_a_disabled_push_refuses_everyone(client: TestClient, openapi: Any) -> None:
    assert (await push(client, "disabled", {"x": 1}, token=""))[0] == 401
    assert (await push(client, "disabled", {"x": 1}))[0] == 404  # a valid token, for another push
    assert openapi.calls == []


async def test_match_chooses_the_targets_from_the_payload(client: TestClient, openapi: Any) -> None:
    assert await push(client, "alerts", alert("critical")) == (202, {"accepted": 2, "targets": 2})
    sent = sorted(json.dumps(s.body.get("openConversationId") or s.body["userIds"]) for s in openapi.sends)
    assert sent == ['"cid-oncall"', '["manager01"]']


async def test_alertmanagers_retry_of_the_same_body_is_sent_once(
    client: TestClient, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert (await push(client, "alerts", alert()))[0] == 202
    assert (await push(client, "alerts", alert()))[0] == 202  # Alertmanager did not see our answer
    assert len(openapi.sends) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reply_")]
    assert [line.split(" ")[0] for line in lines] == ["reply_sent", "reply_skipped"]
    assert "reason='duplicate_done'" in lines[1] and "msg_id=push:alerts:" in lines[1]
    # A different body (the alert resolved) is a new message.
    assert (await push(client, "alerts", alert(status="resolved")))[0] == 202
    assert len(openapi.sends) == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"[1, 2]", "application/json", 422, "body must be a JSON object"),
        (b"{not json", "application/json", 422, "malformed JSON"),
        (b'{"a": 1, "a": 2}', "application/json", 422, "duplicate key 'a'"),
        (b'{"status": "firing"}', "text/plain", 415, "send application/json in UTF-8"),
        (b"{" + b" " * (1024 * 1024) + b"}", "application/json", 413, "body larger than 1048576 bytes"),
    ],
)
async def test_a_bad_body_is_refused_with_a_reason_and_nothing_is_sent(
    client: TestClient, openapi: Any, body: bytes, content_type: str, status: int, reason: str
) -> None:
    answered, answer = await push(client, "alerts", body, content_type=content_type)
    assert answered == status and reason in answer["reason"]
    assert openapi.calls == []


async def test_a_payload_no_route_or_to_accepts_is_a_422(
    write_rules: RulesWriter, openapi: Any, make_client: ClientFactory
) -> None:
    text = RULES.replace("API", openapi.base).replace(
        "    to: [{conversation: cid-default}]\n    match", "    match"
    )
    client = await make_client(write_rules(text), ENV)
    answered, answer = await push(client, "alerts", alert("warning"))
    assert answered == 422 and "no `match` entry holds" in answer["reason"]
    assert (await push(client, "alerts", alert("page")))[0] == 202


async def test_a_refused_send_is_logged_and_shown_in_status_and_metrics(
    client: TestClient, openapi: Any, caplog: pytest.LogCaptureFixture
) -> None:
    openapi.inject(Fault.QUOTA_EXHAUSTED)
    assert (await push(client, "alerts", alert()))[0] == 202
    dropped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reply_dropped")]
    assert len(dropped) == 1 and "openapi_quota" in dropped[0]
    status = client.app[keys.STATUS_SECTIONS]["pushes"]()
    assert status["alerts"]["accepted"] == 1 and status["alerts"]["last_outcome"] == "dropped"
    assert status["disabled"] == {
        "accepted": 0,
        "last_accepted": None,
        "last_outcome": None,
        "last_reason": None,
    }
    exposition = client.app[keys.METRICS].exposition().decode()
    assert 'responder_pushes_total{push="alerts",result="accepted"} 1.0' in exposition


async def test_a_template_that_fails_still_tells_the_group(
    write_rules: RulesWriter, openapi: Any, make_client: ClientFactory
) -> None:
    text = RULES.replace("API", openapi.base).replace(
        "{{ payload.commonLabels.alertname }}", "{{ payload.commonLabels.nope }}"
    )
    client = await make_client(write_rules(text), ENV)
    assert (await push(client, "alerts", alert()))[0] == 202
    (send,) = openapi.sends
    assert send.msg_param == {"content": "push 'alerts' failed to render; the server log says why."}


async def test_payload_values_are_data_never_the_bots_markdown(
    write_rules: RulesWriter, openapi: Any, make_client: ClientFactory
) -> None:
    client = await make_client(write_rules(RULES.replace("API", openapi.base)), ENV)
    await push(client, "alerts", alert(name="[领取奖金](https://evil.example)"))
    (send,) = openapi.sends
    assert send.msg_param["text"] == "#### firing: ［领取奖金］(https:\u200b//evil.example)"


async def test_the_bundled_alertmanager_push_renders_grouped_alerts_with_links(
    make_client: ClientFactory, openapi: Any, tmp_path: Path
) -> None:
    rules = (ROOT / "rules.yaml").read_text(encoding="utf-8")
    path = tmp_path / "rules.yaml"
    path.write_text(
        rules.replace(
            "client_secret: ${DINGTALK_CLIENT_SECRET:-}",
            "client_secret: ${DINGTALK_CLIENT_SECRET:-}\n  api_base: " + openapi.base,
        )
    )
    (tmp_path / "templates").symlink_to(ROOT / "templates")
    client = await make_client(path, ENV)
    payload = json.loads((ROOT / "tests" / "data" / "alertmanager.json").read_text(encoding="utf-8"))
    assert await push(client, "alertmanager", payload) == (202, {"accepted": 1, "targets": 1})
    (send,) = openapi.sends
    assert send.body["openConversationId"] == "cid-ops"
    text = send.msg_param["text"]
    assert text.startswith("#### 🔥 FIRING: HighLatency\n2 firing, 1 resolved")
    assert "[graph](http://prometheus.example:9090/graph?g0.expr=rate%28x%5B5m%5D%29)" in text
    assert "[Open Alertmanager](http://alertmanager.example:9093)" in text
    assert send.msg_param["title"] == "FIRING: HighLatency"
