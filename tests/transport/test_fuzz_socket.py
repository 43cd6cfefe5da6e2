"""Raw-socket fuzzing of a running `responder serve`: hostile bytes never break it.

Every hostile connection must get a 4xx or be closed by the server within a deadline, while
signed callbacks keep getting 200 and their replies keep reaching the sessionWebhook. The tests
at the end pin down bugs found here (all fixed now).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from tests.conftest import SECRET, RulesWriter, Sink, callback_body, eventually, signed_headers
from tests.process import ServerProcess

pytestmark = pytest.mark.slow

ENV = {"DINGTALK_APP_SECRET": SECRET}
SEED = 20261129
CASE_DEADLINE_S = 15.0  # the server's body timeout (10 s) plus a margin
RULES = """
dingtalk:
  app_secret: ${DINGTALK_APP_SECRET}
  session_webhook_origins: ["ORIGIN"]
rules:
  - name: echo
    command: [echo]
    msgtype: text
    at_sender: false
    body: "{{ args_text }}"
"""
_conversations = iter(range(10**9))


@pytest.fixture
async def server(write_rules: RulesWriter, sink: Sink) -> AsyncIterator[ServerProcess]:
    process = await ServerProcess.start(write_rules(RULES.replace("ORIGIN", sink.origin)), environ=ENV)
    yield process
    assert await process.stop() == 0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


# Building requests by hand


def callback_json(sink: Sink, text: str) -> bytes:
    # One conversation per message: DingTalk's 20-a-minute budget per conversation is not under test.
    body = callback_body(text, webhook=sink.webhook(), conversationId=f"cid{next(_conversations)}")
    return json.dumps(body, ensure_ascii=False).encode()


def request(
    body: bytes,
    *,
    extra: str = "",
    content_type: str | None = "application/json; charset=utf-8",
    length: bool = True,
) -> bytes:
    """A signed POST to the callback path; `extra` header lines are added verbatim."""
    signed = signed_headers()
    head = f"POST /dingtalk/callback HTTP/1.1\r\nHost: 127.0.0.1\r\ntimestamp: {signed['timestamp']}\r\n"
    head += f"sign: {signed['sign']}\r\n"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if length:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def chunked(extra: str, chunks: bytes) -> bytes:
    return request(chunks, extra=f"Transfer-Encoding: chunked\r\n{extra}", length=False)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    data: bytes
    may_succeed: bool = False  # a mutated valid callback may still be valid
    expected: int | None = None  # the exact status, when the case is about one check


def fixed_cases(sink: Sink) -> list[Case]:
    valid = callback_json(sink, "echo fixed")
    bomb = gzip.compress(b"\x00" * 20_000_000)  # 20 MB in ~20 KB
    return [
        Case("binary garbage", bytes(range(256)) * 4 + b"\r\n\r\n"),
        Case("NUL bytes", b"\x00" * 1000 + b"\r\n\r\n"),
        Case("request line without version", b"POST /dingtalk/callback\r\n\r\n"),
        Case("request line with extra part", b"GET / HTTP/1.1 x\r\nHost: x\r\n\r\n"),
        Case("unknown protocol", b"GET / FTP/1.1\r\nHost: x\r\n\r\n"),
        Case("HTTP version 9.9", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"),
        Case("unknown method", b"BREW /dingtalk/callback HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("lower-case method", b"post /dingtalk/callback HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("space in path", b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"),
        Case("HTTP/0.9", b"GET /dingtalk/callback\r\n\r\n"),
        Case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
        Case("TLS client hello", bytes.fromhex("16030100a5010000a10303") + b"\x00" * 160),
        Case("header field over 8 KiB", request(valid, extra=f"X-Big: {'a' * 9000}\r\n")),
        Case("header name over 8 KiB", request(valid, extra=f"X-{'a' * 9000}: 1\r\n")),
        Case("200 headers", request(valid, extra="".join(f"X-H{i}: {i}\r\n" for i in range(200)))),
        Case("URL over 8 KiB", f"GET /{'a' * 20_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
        Case("negative Content-Length", request(valid, extra="Content-Length: -1\r\n", length=False)),
        Case("non-numeric Content-Length", request(valid, extra="Content-Length: abc\r\n", length=False)),
        Case(
            "Content-Length with sign",
            request(valid, extra=f"Content-Length: +{len(valid)}\r\n", length=False),
        ),
        Case(
            "Content-Length overflow", request(valid, extra=f"Content-Length: {'9' * 30}\r\n", length=False)
        ),
        Case(
            "two different Content-Lengths",
            request(valid, extra=f"Content-Length: {len(valid)}\r\nContent-Length: 3\r\n", length=False),
        ),
        Case(
            "Content-Length list", request(valid, extra=f"Content-Length: 3, {len(valid)}\r\n", length=False)
        ),
        Case(
            "Content-Length over the cap",
            request(b"{", extra="Content-Length: 70000\r\n", length=False),
            expected=413,
        ),
        Case("chunk size not hex", chunked("", b"zz\r\n{}\r\n0\r\n\r\n")),
        Case("chunk size overflow", chunked("", b"ffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n")),
        Case("negative chunk size", chunked("", b"-2\r\n{}\r\n0\r\n\r\n")),
        Case("chunk longer than its size", chunked("", b"1\r\n{}\r\n0\r\n\r\n")),
        Case(
            "chunked body over the cap",
            chunked("", b"".join(b"2710\r\n" + b" " * 10_000 + b"\r\n" for _ in range(7)) + b"0\r\n\r\n"),
        ),
        Case("chunked and Content-Length", chunked(f"Content-Length: {len(valid)}\r\n", valid)),
        Case(
            "unknown Transfer-Encoding", request(valid, extra="Transfer-Encoding: gzip, x\r\n", length=False)
        ),
        Case("obs-fold header", request(valid, extra="X-A: 1\r\n folded\r\n")),
        Case("space before colon", request(valid, extra="Content-Length : 5\r\n")),
        Case("NUL in a header value", request(valid, extra="X-A: a\x00b\r\n")),
        Case("bare LF line endings", request(valid).replace(b"\r\n", b"\n")),
        Case("gzip bomb", request(bomb, extra="Content-Encoding: gzip\r\n"), expected=415),
        # 415 from the handler, or 400 from aiohttp's parser when it inflates (it should not).
        Case("deflate", request(b"x\x9c\x03\x00", extra="Content-Encoding: deflate\r\n")),
        Case(
            "charset gbk",
            request(
                callback_json(sink, "echo 你好").decode().encode("gbk"),
                content_type="application/json; charset=gbk",
            ),
            expected=415,
        ),
        Case("no Content-Type", request(valid, content_type=None), expected=415),
        Case("form body", request(b"a=1", content_type="application/x-www-form-urlencoded"), expected=415),
        Case("body not UTF-8", request(b'{"msgtype": "\xff\xfe"}'), expected=400),
        Case("body JSON array", request(b"[" * 5000 + b"]" * 5000), expected=400),
        Case("body truncated JSON", request(valid[: len(valid) // 2]), expected=400),
        Case("valid then garbage, pipelined", request(valid) + b"\x00garbage\r\n\r\n", may_succeed=True),
        Case("GET on the callback", b"GET /dingtalk/callback HTTP/1.1\r\nHost: x\r\n\r\n", expected=405),
        Case(
            "unsigned callback",
            b"POST /dingtalk/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
            expected=401,
        ),
        Case(
            "websocket upgrade",
            b"GET /dingtalk/callback HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"\r\n",
        ),
    ]


def random_cases(sink: Sink, rng: random.Random, count: int) -> list[Case]:
    """Seeded garbage: random bytes, random header soup and valid callbacks with bytes flipped."""
    makers: list[Callable[[int], Case]] = [
        lambda i: Case(f"random bytes {i}", rng.randbytes(rng.randint(1, 3000)) + b"\r\n\r\n"),
        lambda i: Case(f"header soup {i}", _header_soup(rng) + b"\r\n\r\n"),
        lambda i: Case(
            f"mutated callback {i}",
            _mutate(rng, request(callback_json(sink, f"echo fuzz-{i}"))) + b"\r\n\r\n",
            may_succeed=True,
        ),
    ]
    return [rng.choice(makers)(i) for i in range(count)]


def _header_soup(rng: random.Random) -> bytes:
    alphabet = b"GETPOST /:;=,-_.0123456789abcdefHTTP/1.1\r\n\t \x00\x7f\xff\xe4\xb8\xad"
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 2000)))


def _mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(raw))
        action = rng.choice(("flip", "insert", "delete", "duplicate"))
        if action == "flip":
            raw[at] = rng.randrange(256)
        elif action == "insert":
            raw[at:at] = rng.choice([b"\r\n", b":", b" ", b"\x00", b"\xff", b"chunked", b"-1", b"9999999"])
        elif action == "delete":
            del raw[at : at + rng.randint(1, 20)]
        else:
            raw[at:at] = raw[at : at + rng.randint(1, 200)]
    return bytes(raw)


# Talking to the server


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    """The next HTTP response on the connection, or None when the server closed it first."""
    line = await reader.readline()
    if not line:
        return None
    status = int(line.split()[1])
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def send(server: ServerProcess, data: bytes) -> tuple[int, bytes] | None:
    """Send `data` and return the first answer (None: closed) within the deadline."""
    reader, writer = await asyncio.open_connection(*address(server))
    try:
        writer.write(data)
        # The server may answer and close before it read everything: fine, read the answer.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        async with asyncio.timeout(CASE_DEADLINE_S):
            try:
                return await read_response(reader)
            except ConnectionError:
                return None
    finally:
        writer.close()


def acceptable(case: Case, answer: tuple[int, bytes] | None) -> bool:
    if case.expected is not None:
        return answer is not None and answer[0] == case.expected
    if answer is None:
        return True
    return 400 <= answer[0] < 500 or (case.may_succeed and answer[0] == 200)


class Heartbeat:
    """Signed callbacks that must keep getting 200 and a reply at the sessionWebhook."""

    def __init__(self, server: ServerProcess, session: aiohttp.ClientSession, sink: Sink) -> None:
        self.server, self.session, self.sink = server, session, sink
        self.beats = 0

    async def beat(self, after: str) -> None:
        token = f"beat-{self.beats}"
        self.beats += 1
        async with self.session.post(
            self.server.url + "/dingtalk/callback",
            data=callback_json(self.sink, f"echo {token}"),
            headers=signed_headers(),
        ) as response:
            assert response.status == 200, f"after {after}: {response.status}"
        await self.replies({token}, after)

    async def replies(self, tokens: set[str], after: str) -> None:
        """Wait for the replies carrying `tokens`; replies to fuzzed callbacks that stayed valid pass by."""
        deadline = time.monotonic() + 10
        missing = set(tokens)
        while missing:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"after {after}: no reply for {missing}"
            item = await self.sink.next(remaining)
            missing.discard(item["json"]["text"]["content"])

    async def follow(self, finished: asyncio.Queue[str | None], every: int) -> None:
        """Beat after every `every` fuzz cases that finish, until None arrives."""
        count = 0
        while (name := await finished.get()) is not None:
            count += 1
            if count % every == 0:
                await self.beat(name)


async def test_hostile_connections_get_4xx_or_closed_and_callbacks_keep_working(
    server: ServerProcess, session: aiohttp.ClientSession, sink: Sink
) -> None:
    started = time.monotonic()
    heart = Heartbeat(server, session, sink)
    # A body that never finishes: opened first, its 408 is checked at the end.
    slow_reader, slow_writer = await asyncio.open_connection(*address(server))
    slow_writer.write(request(b"{", extra="Content-Length: 500\r\n", length=False))
    await heart.beat("warm-up")

    failures = []
    fixed = fixed_cases(sink)
    for case in fixed:
        answer = await send(server, case.data)
        if not acceptable(case, answer):
            failures.append((case.name, answer))
        await heart.beat(case.name)
    assert not failures, failures

    cases = random_cases(sink, random.Random(SEED), 240)
    limit = asyncio.Semaphore(24)

    finished: asyncio.Queue[str | None] = asyncio.Queue()

    async def run(case: Case) -> tuple[Case, tuple[int, bytes] | None]:
        async with limit:
            answer = await send(server, case.data)
        finished.put_nowait(case.name)
        return case, answer

    beating = asyncio.create_task(heart.follow(finished, every=4))
    try:
        results = await asyncio.gather(*(run(c) for c in cases))
    finally:
        finished.put_nowait(None)
        await beating
    bad = [(case.name, answer) for case, answer in results if not acceptable(case, answer)]
    assert not bad, bad

    async with asyncio.timeout(CASE_DEADLINE_S):
        slow_answer = await read_response(slow_reader)
    slow_writer.close()
    assert slow_answer is not None and slow_answer[0] == 408
    await assert_healthy(server, session)
    assert not unexpected_tracebacks(server.output), server.output[-5000:]
    assert "request_failed" not in server.output
    assert heart.beats >= len(fixed) + len(cases) // 4
    assert time.monotonic() - started < 60


async def test_pipelined_requests_are_answered_in_order(
    server: ServerProcess, session: aiohttp.ClientSession, sink: Sink
) -> None:
    heart = Heartbeat(server, session, sink)
    reader, writer = await asyncio.open_connection(*address(server))
    writer.write(
        request(callback_json(sink, "echo pipe-1"))
        + request(callback_json(sink, "echo pipe-2"))
        + b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n"
        + request(b"[]")
    )
    async with asyncio.timeout(CASE_DEADLINE_S):
        answers = [await read_response(reader) for _ in range(4)]
        assert [a[0] if a else None for a in answers] == [200, 200, 200, 400], answers
        writer.write(b"\x00garbage\r\n\r\n" + request(callback_json(sink, "echo never")))
        assert (await read_response(reader) or (0,))[0] == 400
        assert await reader.read() == b""  # closed after the garbage; the last request is never read
    writer.close()
    await heart.replies({"pipe-1", "pipe-2"}, "pipelining")
    await heart.beat("pipelining")
    await assert_healthy(server, session)


async def assert_healthy(server: ServerProcess, session: aiohttp.ClientSession) -> None:
    code, _ = await server.get(session, "/-/healthy")
    assert code == 200
    assert server.proc.returncode is None
    _, exposition = await server.get(session, "/metrics")
    assert 'responder_requests_total{status="500"}' not in exposition


_RECORD = re.compile(r"^\S+ (?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")


def log_records(output: str) -> list[str]:
    """Stderr split into records: a record is a timestamped line plus its indented continuation."""
    records: list[str] = []
    for line in output.splitlines():
        if _RECORD.match(line) or not records:
            records.append(line)
        else:
            records[-1] += "\n" + line
    return records


def unexpected_tracebacks(output: str) -> list[str]:
    """Tracebacks in the log (aiohttp's report of a malformed request is now one counted line)."""
    return [
        r
        for r in log_records(output)
        if "Traceback" in r
        and not ("Error handling request" in r.split("\n", 1)[0] and "aiohttp.http_exceptions." in r)
    ]


# Bugs found by the fuzzing above


async def test_a_client_hanging_up_mid_body_is_not_a_server_error(
    server: ServerProcess, session: aiohttp.ClientSession, sink: Sink
) -> None:
    reader, writer = await asyncio.open_connection(*address(server))
    writer.write(request(b'{"msgId": "x", ', extra="Content-Length: 500\r\n", length=False))
    await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), CASE_DEADLINE_S) == b""
    writer.close()
    # A later callback's reply proves the server has long since handled the hang-up.
    await Heartbeat(server, session, sink).beat("hang-up")
    assert "request_failed" not in server.output, server.output[-3000:]
    await assert_healthy(server, session)


async def test_malformed_requests_do_not_log_tracebacks(
    server: ServerProcess, session: aiohttp.ClientSession
) -> None:
    for data in (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
    ):
        answer = await send(server, data)
        assert answer is not None and answer[0] == 400
    await assert_healthy(server, session)
    assert "Traceback" not in server.output, server.output[-3000:]
    # One line now and then, with a count, instead of an ERROR per request. The log reaches the
    # pipe from the writer thread, so it may land after the answers.
    await eventually(lambda: "request_malformed" in server.output, timeout=10)
    assert server.output.count("request_malformed") <= 2, server.output[-3000:]
