"""The playground page in headless Chromium: replies render as DingTalk shows them, and nothing
from a message or a template can run as markup or script. Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from responder.app import create_app
from responder.engine.markdown import escape_markdown
from responder.rules.load import load_rules
from responder.rules.store import RuleStore
from responder.settings import AppOptions
from responder.transport.playground import add_playground

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
BUNDLED_RULES = ROOT / "rules.yaml"
ARTIFACTS = ROOT / "test-artifacts"
XSS_PAYLOADS = (
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    "[x](javascript:alert(1))",
)


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


COLOURS = {"blue": (50, 150, 250), "orange": (240, 140, 26), "green": (30, 142, 62)}
BLUE = "data:image/png;base64," + base64.b64encode(png(COLOURS["blue"], 48)).decode()
# Picture fields take http(s) only (what DingTalk can show): a local server serves them.
ORANGE, GREEN, BLUE_PICTURE = "IMAGES/orange.png", "IMAGES/green.png", "IMAGES/blue.png"
RICH_RULES = f"""
dingtalk:
  callback_path: /dingtalk/callback
  reply: session_webhook
rules:
  - name: md
    keywords: [md]
    msgtype: markdown
    title: Markdown tour
    body: |
      # Heading one
      ###### Heading six
      **bold** and *italic* text
      > a quoted line
      - first bullet
      - second bullet
      1. step one
      2. step two
      See [the docs](https://example.com/docs) or [that](javascript:alert(1)).
      ![chart]({BLUE})
      ![bad](javascript:alert(1))
      line one
      line two
  - name: choose
    keywords: [choose]
    msgtype: actionCard
    title: Pick one
    body: "#### Deploy?"
    button_orientation: horizontal
    buttons:
      - {{title: Approve, url: "https://example.com/yes"}}
      - {{title: Reject, url: "https://example.com/no"}}
  - name: stack
    keywords: [stack]
    msgtype: actionCard
    title: Stacked
    body: Stacked buttons
    buttons:
      - {{title: First, url: "https://example.com/1"}}
      - {{title: Second, url: "dingtalk://dingtalkclient/page/link?url=x"}}
  - name: feed
    keywords: [feed]
    msgtype: feedCard
    links:
      - {{title: Release 1.0 is out, url: "https://example.com/r1", picture: "{ORANGE}"}}
      - {{title: Changelog, url: "https://example.com/log", picture: "{GREEN}"}}
  - name: card
    keywords: [card]
    msgtype: link
    title: Weekly report
    body: Numbers for the week, with a summary long enough to need clamping in the card body.
    url: https://example.com/report
    picture: "{BLUE_PICTURE}"
  - name: plain
    keywords: [plain]
    msgtype: text
    body: "plain words *not markdown*"
"""


@dataclass
class Observed:
    """Everything the page did that a safe page must not: dialogs, errors, off-host requests."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.dialogs == []
        assert self.errors == []
        assert self.foreign_requests == []


class Playground:
    """Drives the page like a person: fill the sender, type, press Enter, wait for the answer."""

    def __init__(self, page: Any, observed: Observed) -> None:
        self.page = page
        self.observed = observed
        self.sent = 0

    async def send(
        self, text: str, *, nick: str = "Tester", staff_id: str = "tester", offline: bool = False
    ) -> Any:
        await self.page.fill("#nick", nick)
        await self.page.fill("#staff-id", staff_id)
        await self.page.set_checked("#offline", offline)
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")
        self.sent += 1
        answer = self.page.locator(f'#transcript li.answer[data-seq="{self.sent}"]')
        await answer.wait_for()
        return answer

    async def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"playground-{name}.png"))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium not installed at /usr/bin/chromium (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@asynccontextmanager
async def open_playground(browser: Any, aiohttp_server: Any, rules: Path) -> AsyncIterator[Playground]:
    app = create_app(RuleStore(load_rules(rules, {}), {}), AppOptions(dev=True))
    add_playground(app)
    server = await aiohttp_server(app)
    context = await browser.new_context(viewport={"width": 1280, "height": 820})
    observed = Observed()
    await context.route("**/*", _loopback_only(observed))
    page = await context.new_page()
    page.on("dialog", lambda dialog: _refuse_dialog(dialog, observed))
    page.on("console", lambda msg: observed.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: observed.errors.append(str(exc)))
    await page.goto(str(server.make_url("/-/playground/")))
    await page.locator("#rules-summary", has_text="rules generation 1").wait_for()
    yield Playground(page, observed)
    await context.close()


def _loopback_only(observed: Observed) -> Any:
    async def route(route: Any) -> None:
        url = route.request.url
        if url.startswith("data:") or urlsplit(url).hostname == "127.0.0.1":
            await route.continue_()
            return
        observed.foreign_requests.append(url)
        await route.abort()

    return route


async def _refuse_dialog(dialog: Any, observed: Observed) -> None:
    observed.dialogs.append(dialog.message)
    await dialog.dismiss()


@pytest.fixture
async def bundled(browser: Any, aiohttp_server: Any) -> AsyncIterator[Playground]:
    async with open_playground(browser, aiohttp_server, BUNDLED_RULES) as playground:
        yield playground


@pytest.fixture
async def images(aiohttp_server: Any) -> str:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=png(COLOURS[request.match_info["colour"]], 48), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{colour}.png", image)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def rich(browser: Any, aiohttp_server: Any, tmp_path: Path, images: str) -> AsyncIterator[Playground]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RICH_RULES.replace("IMAGES", images), encoding="utf-8")
    async with open_playground(browser, aiohttp_server, rules) as playground:
        yield playground


async def texts(locator: Any) -> list[str]:
    return [t.strip() for t in await locator.all_text_contents()]


async def test_ip_renders_markdown_heading_and_highlighted_mention(bundled: Playground) -> None:
    answer = await bundled.send("ip", offline=True)  # the fixture's address; no IP service is asked
    await bundled.screenshot("ip")
    assert await answer.get_attribute("data-msgtype") == "markdown"
    assert await texts(answer.locator(".bubble .md h4")) == ["Public IP"]
    assert await texts(answer.locator(".bubble .md strong")) == ["203.0.113.7"]
    own = bundled.page.locator('#transcript li.me[data-seq="1"]')
    assert await texts(own.locator(".badge")) == ["offline"]
    assert await texts(answer.locator(".bubble .mention")) == ["@Tester"]
    assert await texts(answer.locator(".preview")) == ["preview: Public IP"]
    page = bundled.page
    assert await texts(page.locator("#verdict .rule-name")) == ["ip"]
    assert await texts(page.locator("#explain tr.won .rule-name")) == ["ip"]
    assert '"title": "Public IP"' in await page.locator("#raw").text_content()
    bundled.observed.assert_clean()


async def test_help_renders_a_bulleted_list_with_bold_words(bundled: Playground) -> None:
    answer = await bundled.send("help")
    await bundled.screenshot("help")
    words = ["ip / 公网ip / myip", "help / 帮助 / ?", "about / 关于 / version"]
    items = await texts(answer.locator(".md ul > li"))
    assert [item.split(":")[0] for item in items] == words
    assert await texts(answer.locator(".md ul > li > strong")) == words
    bundled.observed.assert_clean()


async def test_about_renders_an_action_card_with_its_project_page_button(bundled: Playground) -> None:
    answer = await bundled.send("about")
    await bundled.screenshot("about")
    assert await answer.get_attribute("data-msgtype") == "actionCard"
    button = answer.locator(".action-card .buttons.single a.btn")
    assert await texts(button.locator(".btn-title")) == ["Project page"]
    assert await button.get_attribute("href") == "https://github.com/responder-bot/responder"
    assert await button.get_attribute("rel") == "noopener noreferrer"
    assert "Say help to see what I can do." in await answer.locator(".md p").text_content()
    bundled.observed.assert_clean()


async def test_unknown_word_shows_the_fallback_and_why(bundled: Playground) -> None:
    answer = await bundled.send("frobnicate")
    await bundled.screenshot("unknown")
    assert await texts(answer.locator(".md h4")) == ['Sorry, I did not understand "frobnicate"']
    page = bundled.page
    assert await texts(page.locator("#verdict")) == ["unknown nothing else matched"]
    reasons = await texts(page.locator("#explain tbody tr .reason"))
    assert reasons[:4] == ["keywords did not match"] * 2 + ["empty: not needed", "keywords did not match"]
    bundled.observed.assert_clean()


async def test_private_chat_reply_has_no_mention(bundled: Playground) -> None:
    await bundled.page.check('input[name="chat"][value="private"]')
    answer = await bundled.send("help")
    assert await answer.locator(".mention").count() == 0
    assert await bundled.page.locator("#at-robot").is_hidden()
    bundled.observed.assert_clean()


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
async def test_xss_payloads_as_text_nick_and_staff_id_show_as_text_and_run_nothing(
    bundled: Playground, payload: str
) -> None:
    answer = await bundled.send(payload, nick=payload, staff_id=payload.replace(" ", ""))
    own = bundled.page.locator('#transcript li.msg.me[data-seq="1"]')
    await bundled.screenshot("xss-" + str(XSS_PAYLOADS.index(payload)))
    assert payload in await own.locator(".bubble").text_content()
    assert await texts(own.locator(".nick")) == [payload]
    # Echoed into markdown, the payload is data: its characters shown, never its syntax.
    assert escape_markdown(payload)[:50] in await answer.locator(".md h4").text_content()
    transcript = bundled.page.locator("#transcript")
    assert await transcript.locator("img, script, iframe, [onerror]").count() == 0
    assert await transcript.locator('a[href^="javascript"]').count() == 0
    assert await bundled.page.locator("script").count() == 1  # only playground.js
    bundled.observed.assert_clean()


async def test_markdown_subset_renders_headings_quotes_lists_links_images_breaks(rich: Playground) -> None:
    answer = await rich.send("md")
    await rich.screenshot("markdown")
    md = answer.locator(".md")
    assert await texts(md.locator("h1")) == ["Heading one"]
    assert await texts(md.locator("h6")) == ["Heading six"]
    assert await texts(md.locator("strong")) == ["bold"]
    assert await texts(md.locator("em")) == ["italic"]
    assert await texts(md.locator("blockquote")) == ["a quoted line"]
    assert await texts(md.locator("ul > li")) == ["first bullet", "second bullet"]
    assert await texts(md.locator("ol > li")) == ["step one", "step two"]
    assert await md.locator("a").count() == 1
    assert await md.locator("a").get_attribute("href") == "https://example.com/docs"
    assert "[that](javascript:alert(1))" in await md.text_content()
    assert await md.locator("img").count() == 1
    assert await md.locator("img").get_attribute("src") == BLUE
    assert "![bad](javascript:alert(1))" in await md.text_content()
    assert await md.locator("p br").count() >= 2  # single newlines are line breaks, as in DingTalk
    rich.observed.assert_clean()


async def test_horizontal_action_card_buttons_sit_side_by_side(rich: Playground) -> None:
    answer = await rich.send("choose")
    await rich.screenshot("buttons-horizontal")
    buttons = answer.locator(".buttons.horizontal a.btn")
    assert await texts(buttons) == ["Approve", "Reject"]
    first, second = await buttons.nth(0).bounding_box(), await buttons.nth(1).bounding_box()
    assert first["y"] == second["y"] and first["x"] < second["x"]
    rich.observed.assert_clean()


async def test_vertical_action_card_buttons_stack_and_non_http_urls_are_inert(rich: Playground) -> None:
    answer = await rich.send("stack")
    await rich.screenshot("buttons-vertical")
    buttons = answer.locator(".buttons.vertical .btn")
    assert await texts(buttons) == ["First", "Second"]
    first, second = await buttons.nth(0).bounding_box(), await buttons.nth(1).bounding_box()
    assert first["x"] == second["x"] and first["y"] < second["y"]
    assert await buttons.nth(1).evaluate("node => node.tagName") == "SPAN"
    rich.observed.assert_clean()


async def test_feed_card_lists_entries_with_pictures(rich: Playground, images: str) -> None:
    answer = await rich.send("feed")
    await rich.screenshot("feedcard")
    assert await texts(answer.locator(".feed-entry .feed-title")) == ["Release 1.0 is out", "Changelog"]
    assert await answer.locator(".feed-hero img").get_attribute("src") == ORANGE.replace("IMAGES", images)
    assert await answer.locator(".feed-entry img").count() == 2
    assert await answer.locator("a.feed-entry").count() == 2
    rich.observed.assert_clean()


async def test_link_card_shows_title_text_and_picture(rich: Playground, images: str) -> None:
    answer = await rich.send("card")
    await rich.screenshot("link")
    card = answer.locator("a.link-card")
    assert await card.get_attribute("href") == "https://example.com/report"
    assert await texts(card.locator(".link-title")) == ["Weekly report"]
    assert (await card.locator(".link-text").text_content()).startswith("Numbers for the week")
    assert await card.locator("img.link-pic").get_attribute("src") == BLUE_PICTURE.replace("IMAGES", images)
    rich.observed.assert_clean()


async def test_text_reply_is_not_markdown_and_mentions_the_sender(rich: Playground) -> None:
    answer = await rich.send("plain", nick="Alice", staff_id="alice01")
    await rich.screenshot("text")
    assert await texts(answer.locator(".text-body")) == ["@Alice plain words *not markdown*"]
    assert await texts(answer.locator(".mention")) == ["@Alice"]
    assert await answer.locator("em").count() == 0
    rich.observed.assert_clean()


async def test_message_no_rule_answers_shows_a_note(rich: Playground) -> None:
    answer = await rich.send("nothing here")
    assert await texts(answer) == ["no reply — no rule matched"]
    assert await rich.page.locator("#raw").text_content() == "null"
    rich.observed.assert_clean()
