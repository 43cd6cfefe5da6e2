"""The playground's HTTP surface: mounting rules, the try API's contract and its strict input checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from responder import keys
from responder.app import create_app
from responder.rules.load import load_rules
from responder.rules.store import RuleStore
from responder.settings import AppOptions
from responder.transport.playground import CONTENT_SECURITY_POLICY, PlaygroundRefused, add_playground
from responder.transport.playground.api import MAX_BODY_BYTES, MAX_NAME_CHARS, MAX_TEXT_CHARS
from tests.conftest import Sink, callback_body

BUNDLED_RULES = Path(__file__).resolve().parents[2] / "rules.yaml"
TRY = "/-/playground/api/try"

SCOPED_RULES = """
dingtalk:
  callback_path: /dingtalk/callback
  reply: session_webhook
rules:
  - name: deploy
    command: [deploy]
    scope: {chat: group, admins_only: true}
    msgtype: text
    body: "deploying {{ args | join(' ') }}"
  - name: secret
    keywords: [secret]
    scope: {chat: private}
    msgtype: text
    body: only in private
"""


def playground_app(rules: Path) -> web.Application:
    app = create_app(RuleStore(load_rules(rules, {}), {}), AppOptions(dev=True))
    add_playground(app)
    return app


@pytest.fixture
async def client(aiohttp_client: Any) -> TestClient:
    return await aiohttp_client(playground_app(BUNDLED_RULES))


@pytest.fixture
def scoped_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(SCOPED_RULES, encoding="utf-8")
    return path


async def try_text(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = await client.post(TRY, json=fields)
    assert response.status == 200, await response.text()
    return await response.json()


async def refusal(client: TestClient, body: bytes, status: int = 400) -> dict[str, Any]:
    response = await client.post(TRY, data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    return await response.json()


def test_playground_refuses_to_mount_outside_dev_mode() -> None:
    app = create_app(RuleStore(load_rules(BUNDLED_RULES, {}), {}), AppOptions(dev=False))
    with pytest.raises(PlaygroundRefused):
        add_playground(app)
    assert not any(r.resource and "playground" in r.resource.canonical for r in app.router.routes())


async def test_page_is_served_with_strict_content_security_policy(client: TestClient) -> None:
    response = await client.get("/-/playground/")
    assert response.status == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = await response.text()
    assert '<script src="static/playground.js"' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere


async def test_bare_prefix_redirects_to_the_page(client: TestClient) -> None:
    response = await client.get("/-/playground", allow_redirects=False)
    assert response.status == 308
    assert response.headers["Location"] == "/-/playground/"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("playground.js", "text/javascript"), ("playground.css", "text/css")],
)
async def test_static_files_are_served_with_their_type(
    client: TestClient, name: str, content_type: str
) -> None:
    response = await client.get(f"/-/playground/static/{name}")
    assert response.status == 200
    assert response.content_type == content_type
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("name", ["index.html", "..%2f__init__.py", "api.py", "nope.js"])
async def test_only_listed_static_files_are_reachable(client: TestClient, name: str) -> None:
    response = await client.get(f"/-/playground/static/{name}")
    assert response.status == 404


async def test_requests_addressed_to_a_non_loopback_host_are_refused(client: TestClient) -> None:
    page = await client.get("/-/playground/", headers={"Host": "rebound.example:8080"})
    answer = await client.post(TRY, json={"text": "help"}, headers={"Host": "rebound.example"})
    assert (page.status, answer.status) == (403, 403)


async def test_try_ip_reports_rule_reply_explain_and_rules_status(client: TestClient) -> None:
    result = await try_text(client, text="ip", offline=True)  # offline: no IP service is asked
    assert (result["rule"], result["reason"]) == ("ip", "keyword 'ip'")
    reply = result["reply"]
    assert reply["msgtype"] == "markdown"
    assert reply["markdown"]["title"] == "Public IP"
    assert reply["markdown"]["text"] == "#### Public IP\n**203.0.113.7**\n\n@tester"
    assert result["explain"][0] == {"rule": "ip", "matched": True, "reason": "keyword 'ip'"}
    assert [v["matched"] for v in result["explain"][1:]] == [False] * (len(result["explain"]) - 1)
    assert result["generation"] == 1
    assert result["reload"]["ok"] is True
    assert result["reload"]["error"] == ""
    assert isinstance(result["reload"]["loaded_at"], float)


async def test_group_reply_mentions_the_chosen_sender(client: TestClient) -> None:
    result = await try_text(client, text="help", nick="Alice", staff_id="alice01", chat="group")
    assert result["reply"]["at"] == {"atUserIds": ["alice01"], "isAtAll": False}
    assert result["reply"]["markdown"]["text"].endswith("\n\n@alice01")


async def test_private_reply_mentions_nobody(client: TestClient) -> None:
    result = await try_text(client, text="help", chat="private")
    assert "at" not in result["reply"]
    assert "@tester" not in result["reply"]["markdown"]["text"]


async def test_about_reply_is_the_exact_action_card_json(client: TestClient) -> None:
    card = (await try_text(client, text="about"))["reply"]["actionCard"]
    assert card["title"] == "About responder"
    assert card["btnOrientation"] == "0"
    assert (card["singleTitle"], card["singleURL"]) == (
        "Project page",
        "https://github.com/responder-bot/responder",
    )


async def test_unknown_word_is_answered_by_the_fallback(client: TestClient) -> None:
    result = await try_text(client, text="frobnicate")
    assert (result["rule"], result["reason"]) == ("unknown", "nothing else matched")
    assert 'did not understand "frobnicate"' in result["reply"]["markdown"]["text"]


async def test_admin_flag_and_chat_reach_the_matcher(aiohttp_client: Any, scoped_rules: Path) -> None:
    client = await aiohttp_client(playground_app(scoped_rules))
    refused = await try_text(client, text="deploy web", admin=False)
    admitted = await try_text(client, text="deploy web", admin=True)
    private = await try_text(client, text="deploy web", admin=True, chat="private")
    assert refused["rule"] == "deploy" and refused["reason"] == "told: scope: admins only"
    assert refused["reply"]["text"]["content"] == "@tester Sorry, only organisation admins may use this."
    assert refused["explain"][0]["reason"] == "matched command 'deploy', but scope: admins only"
    assert admitted["reply"]["text"]["content"] == "@tester deploying web"
    assert private["explain"][0]["reason"] == "matched command 'deploy', but scope: group chats only"


async def test_no_rule_gives_null_reply_and_reason(aiohttp_client: Any, scoped_rules: Path) -> None:
    client = await aiohttp_client(playground_app(scoped_rules))
    result = await try_text(client, text="hello")
    assert result == {**result, "rule": None, "reply": None, "reason": "no rule matched"}


async def test_failed_reload_is_reported_with_its_error(aiohttp_client: Any, scoped_rules: Path) -> None:
    app = playground_app(scoped_rules)
    client = await aiohttp_client(app)
    scoped_rules.write_text("rules: [", encoding="utf-8")
    await app[keys.STORE].reload()
    result = await try_text(client, text="secret", chat="private")
    assert result["rule"] == "secret"  # the old rules keep serving
    assert result["generation"] == 1
    assert result["reload"]["ok"] is False
    assert str(scoped_rules) in result["reload"]["error"]


async def test_status_endpoint_reports_generation(client: TestClient) -> None:
    response = await client.get("/-/playground/api/status")
    body = await response.json()
    assert body["generation"] == 1 and body["reload"]["ok"] is True


@pytest.mark.parametrize(
    ("body", "error", "reason"),
    [
        (b"{", "bad_json", "malformed JSON"),
        (b"\xff\xfe", "bad_json", "not UTF-8"),
        (b"[]", "bad_json", "must be a JSON object"),
        (b"{}", "bad_field", "missing field 'text'"),
        (b'{"text": 5}', "bad_field", "'text' must be a string"),
        (b'{"text": "  "}', "bad_field", "'text' must not be blank"),
        (b'{"text": "ip", "nick": null}', "bad_field", "'nick' must be a string"),
        (b'{"text": "ip", "staff_id": ["x"]}', "bad_field", "'staff_id' must be a string"),
        (b'{"text": "ip", "chat": "channel"}', "bad_field", "'chat' must be"),
        (b'{"text": "ip", "admin": "yes"}', "bad_field", "'admin' must be a boolean"),
        (b'{"text": "ip", "admin": 1}', "bad_field", "'admin' must be a boolean"),
        (b'{"text": "ip", "offline": "true"}', "bad_field", "'offline' must be a boolean"),
        (b'{"text": "ip", "offline": 1}', "bad_field", "'offline' must be a boolean"),
        (b'{"text": "ip", "msgtype": "picture"}', "bad_field", "unknown field 'msgtype'"),
    ],
)
async def test_bad_input_is_refused_with_a_reason(
    client: TestClient, body: bytes, error: str, reason: str
) -> None:
    refused = await refusal(client, body)
    assert refused["error"] == error
    assert reason in refused["reason"]


@pytest.mark.parametrize(
    "fields",
    [
        {"text": "x" * (MAX_TEXT_CHARS + 1)},
        {"text": "ip", "nick": "n" * (MAX_NAME_CHARS + 1)},
        {"text": "ip", "staff_id": "s" * (MAX_NAME_CHARS + 1)},
    ],
)
async def test_oversize_fields_are_refused(client: TestClient, fields: dict[str, str]) -> None:
    refused = await refusal(client, json.dumps(fields).encode())
    assert refused["error"] == "too_large"


async def test_fields_at_their_limits_are_accepted(client: TestClient) -> None:
    result = await try_text(client, text="x" * MAX_TEXT_CHARS, nick="n" * MAX_NAME_CHARS)
    assert result["rule"] == "unknown"


async def test_oversize_body_is_refused(client: TestClient) -> None:
    body = json.dumps({"text": "ip", "pad": " " * MAX_BODY_BYTES}).encode()
    refused = await refusal(client, body)
    assert refused == {"error": "too_large", "reason": f"body larger than {MAX_BODY_BYTES} bytes"}


async def test_non_json_content_type_is_refused(client: TestClient) -> None:
    response = await client.post(TRY, data=b'{"text":"ip"}', headers={"Content-Type": "text/plain"})
    assert response.status == 415


COOLDOWN_RULES = """
dingtalk:
  reply: response
rules:
  - name: ip
    keywords: [ip]
    cooldown: {per: global, seconds: 600, max: 2}
    msgtype: text
    body: "203.0.113.7"
"""


async def test_playground_shows_a_cooldown_like_a_group_but_keeps_its_own_counters(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(COOLDOWN_RULES, encoding="utf-8")
    client = await aiohttp_client(playground_app(rules))
    tries = [await try_text(client, text="ip") for _ in range(3)]
    assert [t["outcome"] for t in tries] == ["sent", "sent", "skipped"]
    assert (tries[2]["reason"], tries[2]["reply"]) == ("cooldown", None)
    # The real pipeline's cooldown was never touched: a group still gets both its answers.
    for _ in range(2):
        response = await client.post("/dingtalk/callback", json=callback_body("ip"))
        assert (await response.json())["text"]["content"] == "@user123 203.0.113.7"


def source_rules(origin: str) -> str:
    """A rule whose source is a local HTTP service, with a fixture that says it is one."""
    return f"""
dingtalk:
  reply: response
sources:
  weather:
    kind: http
    url: {origin}/weather/{{{{ args[0] }}}}
rules:
  - name: weather
    command: [weather]
    source: weather
    fixture: {{errmsg: from the fixture}}
    msgtype: text
    at_sender: false
    body: "{{{{ args[0] }}}}: {{{{ source.data.errmsg if source.ok else 'unavailable ' ~ source.error }}}}"
  - name: bare
    keywords: [bare]
    source: weather
    msgtype: text
    at_sender: false
    body: "{{{{ source.data if source.ok else source.error }}}}"
"""


async def test_offline_answers_sources_from_fixtures_and_calls_nothing(
    tmp_path: Path, aiohttp_client: Any, trap: Sink
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(source_rules(trap.origin), encoding="utf-8")
    client = await aiohttp_client(playground_app(rules))

    offline = await try_text(client, text="weather 杭州", offline=True)
    assert offline["reply"] == {"msgtype": "text", "text": {"content": "杭州: from the fixture"}}
    assert trap.count == 0

    live = await try_text(client, text="weather 杭州")  # the switch off: the source is really called
    assert live["reply"] == {"msgtype": "text", "text": {"content": "杭州: ok"}}
    assert trap.count == 1
    assert trap.received.get_nowait()["path"] == "/weather/杭州"  # aiohttp decodes the path


async def test_offline_without_a_fixture_is_a_source_failure_not_a_call(
    tmp_path: Path, aiohttp_client: Any, trap: Sink
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(source_rules(trap.origin), encoding="utf-8")
    client = await aiohttp_client(playground_app(rules))
    result = await try_text(client, text="bare", offline=True)
    assert result["reply"]["text"]["content"] == "no_fixture"
    assert trap.count == 0


async def test_offline_and_live_tries_share_the_playgrounds_cooldowns(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(COOLDOWN_RULES, encoding="utf-8")
    client = await aiohttp_client(playground_app(rules))
    tries = [await try_text(client, text="ip", offline=offline) for offline in (True, False, True)]
    assert [t["outcome"] for t in tries] == ["sent", "sent", "skipped"]
