"""The bundled rules.yaml and templates, end to end, with the IP services on a local server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from aiohttp import web

from responder import __version__
from tests.conftest import REPO, ClientFactory, Sink, callback_body, signed_headers


class IpService:
    def __init__(self) -> None:
        self.answer = "203.0.113.7\n"
        self.status = 200
        self.calls = 0
        self.hold: asyncio.Event | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(text=self.answer, status=self.status)


@pytest.fixture
async def ip_service(aiohttp_server) -> tuple[IpService, str]:  # type: ignore[no-untyped-def]
    service = IpService()
    app = web.Application()
    app.router.add_get("/ip", service.handle)
    server = await aiohttp_server(app)
    return service, f"http://127.0.0.1:{server.port}/ip"


@pytest.fixture
def bundled(tmp_path: Path, sink: Sink, ip_service: tuple[IpService, str]) -> Path:
    """The bundled files, pointed at the local sink and IP service instead of the internet."""
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    text = (REPO / "rules.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "  reply: session_webhook\n",
        f'  reply: session_webhook\n  session_webhook_origins: ["{sink.origin}"]\n',
    )
    text = text.replace("    kind: public_ip\n", f'    kind: public_ip\n    providers: ["{ip_service[1]}"]\n')
    assert sink.origin in text and ip_service[1] in text
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def ask(client, sink: Sink, text: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    body = json.dumps(callback_body(text, webhook=sink.webhook(), **fields), ensure_ascii=False)
    response = await client.post("/dingtalk/callback", data=body.encode(), headers=signed_headers())
    assert response.status == 200
    return (await sink.next())["json"]


@pytest.mark.parametrize("word", ["ip", "IP", "公网ip", "  ip  ", "@robot ip"])
async def test_ip_answers_the_public_address(
    word: str, bundled: Path, sink: Sink, make_client: ClientFactory, ip_service: tuple[IpService, str]
) -> None:
    client = await make_client(bundled)
    reply = await ask(client, sink, word)
    assert reply["msgtype"] == "markdown"
    assert reply["markdown"]["title"] == "Public IP"
    assert "**203.0.113.7**" in reply["markdown"]["text"]
    assert reply["markdown"]["text"].endswith("@user123")
    assert reply["at"] == {"atUserIds": ["user123"], "isAtAll": False}


async def test_ip_is_cached_between_messages(
    bundled: Path, sink: Sink, make_client: ClientFactory, ip_service: tuple[IpService, str]
) -> None:
    client = await make_client(bundled)
    for _ in range(3):
        await ask(client, sink, "ip")
    assert ip_service[0].calls == 1


@pytest.mark.parametrize(("status", "answer"), [(500, "oops"), (200, "<html>nope</html>"), (200, "::1")])
async def test_ip_failure_gets_a_friendly_reply(
    status: int,
    answer: str,
    bundled: Path,
    sink: Sink,
    make_client: ClientFactory,
    ip_service: tuple[IpService, str],
) -> None:
    ip_service[0].status, ip_service[0].answer = status, answer
    client = await make_client(bundled)
    reply = await ask(client, sink, "ip", conversationType="1")
    assert reply == {
        "msgtype": "markdown",
        "markdown": {
            "title": "Public IP",
            "text": "#### Public IP\n"
            "Sorry, I could not look up the public IP right now. Please try again in a minute.",
        },
    }


@pytest.mark.parametrize("word", ["tip", "zip", "description", "ipconfig"])
async def test_ip_never_fires_on_longer_words(
    word: str, bundled: Path, sink: Sink, make_client: ClientFactory, ip_service: tuple[IpService, str]
) -> None:
    client = await make_client(bundled)
    reply = await ask(client, sink, word)
    assert reply["markdown"]["title"] == "Not understood"
    assert ip_service[0].calls == 0


async def test_help_lists_every_visible_rule_from_the_rules(
    bundled: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(bundled)
    text = (await ask(client, sink, "帮助"))["markdown"]["text"]
    for line in (
        "**ip / 公网ip / myip**: The server's public IPv4 address",
        "**help / 帮助 / ?**",
        "**about / 关于",
    ):
        assert line in text
    assert "unknown" not in text and "not-text" not in text


async def test_about_is_an_action_card_with_the_version(
    bundled: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(bundled)
    card = (await ask(client, sink, "about"))["actionCard"]
    assert card["title"] == "About responder"
    assert __version__ in card["text"]
    assert (card["singleTitle"], card["singleURL"]) == (
        "Project page",
        "https://github.com/responder-bot/responder",
    )


async def test_unknown_words_get_the_fallback_with_the_keywords(
    bundled: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(bundled)
    reply = await ask(client, sink, "make me a sandwich")
    assert reply["markdown"]["title"] == "Not understood"
    assert 'did not understand "make me a sandwich"' in reply["markdown"]["text"]
    assert "- **ip**" in reply["markdown"]["text"]


async def test_pictures_get_the_text_only_notice(
    bundled: Path, sink: Sink, make_client: ClientFactory
) -> None:
    client = await make_client(bundled)
    reply = await ask(client, sink, None, msgtype="picture", content={"downloadCode": "x"})
    assert reply["msgtype"] == "text"
    assert "only read words" in reply["text"]["content"]


async def test_a_slow_source_never_delays_the_answer_to_dingtalk(
    bundled: Path, sink: Sink, make_client: ClientFactory, ip_service: tuple[IpService, str]
) -> None:
    ip_service[0].hold = release = asyncio.Event()
    client = await make_client(bundled)
    body = json.dumps(callback_body("ip", webhook=sink.webhook()), ensure_ascii=False)
    response = await client.post("/dingtalk/callback", data=body.encode(), headers=signed_headers())
    assert response.status == 200  # answered while the IP service is still holding the request
    assert sink.count == 0
    release.set()
    reply = (await sink.next())["json"]
    assert "**203.0.113.7**" in reply["markdown"]["text"]
