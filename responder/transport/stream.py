"""StreamClient: keeps one registered DingTalk Stream WebSocket open and hands bot messages on.

It ACKs every frame before doing anything else with it and reconnects with backoff until
cancelled. Parsing and ACK encoding live in `frames`; redeliveries and replies are not its
business: the pipeline's msgId ledger recognises a redelivered message whatever transport brought
it, and Stream mode replies go through the sessionWebhook like HTTP mode.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp
from yarl import URL

from responder import __version__
from responder.dingtalk import Message, MessageError, parse_message
from responder.dingtalk import stream as frames
from responder.dingtalk.stream import Endpoint, Frame, FrameError, RegistrationError
from responder.logs import quoted
from responder.metrics import Metrics
from responder.transport.backoff import Backoff

log = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
_NETWORK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


class StreamClient:
    """Register → connect → ACK and submit frames → on any loss, back off and start over."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_base: str,
        client_id: str,
        client_secret: str,
        submit: Callable[[Message], object],
        metrics: Metrics | None = None,
        keepalive_s: float = 60.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        rng: random.Random | None = None,
        user_agent: str = f"responder/{__version__}",
        local_ip: str | None = None,
        healthy_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._register_url = api_base.rstrip("/") + frames.REGISTER_PATH
        self._body = frames.registration_body(client_id, client_secret, user_agent, local_ip)
        self._user_agent = user_agent
        self._submit = submit
        self._metrics = metrics if metrics is not None else Metrics()
        self._keepalive_s = keepalive_s if keepalive_s > 0 else None
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, rng or random.Random())
        self._healthy_after_s = healthy_after_s
        self._clock = clock
        self._sleep = sleep
        self._frames_on_socket = 0
        self.connected = asyncio.Event()
        """Set while a registered socket is open; awaited by tests and readiness probes."""
        self.disconnected = asyncio.Event()
        self.disconnected.set()

    @property
    def is_live(self) -> bool:
        return self.connected.is_set()

    async def run(self) -> None:
        """Stay connected until cancelled. Never raises anything but CancelledError."""
        while True:
            try:
                healthy = await self._attempt()
            except Exception:
                # A bug, not a network condition; keep the transport alive regardless.
                log.exception("stream_attempt_crashed")
                healthy = False
            if healthy:
                self._backoff.reset()
            self._metrics.stream_reconnects.inc()
            await self._sleep(self._backoff.next_delay())

    async def _attempt(self) -> bool:
        """One register-connect-pump cycle; True if the connection proved healthy."""
        try:
            endpoint = await self._register()
        except RegistrationError as exc:
            log.warning("stream_registration_failed status=%s", exc.status)
            return False
        try:
            ws = await self._connect(endpoint)
        except aiohttp.WSServerHandshakeError as exc:
            log.warning("stream_connect_failed status=%s", exc.status)
            return False
        except _NETWORK_ERRORS as exc:
            log.warning("stream_connect_failed reason=%s", type(exc).__name__)
            return False
        async with ws:
            return await self._serve(ws, endpoint)

    async def _register(self) -> Endpoint:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        timeout = aiohttp.ClientTimeout(total=REGISTER_TIMEOUT_S)
        try:
            async with self._session.post(
                self._register_url, json=self._body, headers=headers, timeout=timeout
            ) as resp:
                if resp.status != 200:
                    raise RegistrationError(resp.status)
                payload = await resp.json(content_type=None)
        except ValueError:
            raise RegistrationError("bad_body") from None
        except _NETWORK_ERRORS as exc:
            raise RegistrationError(type(exc).__name__) from None
        return frames.parse_registration(payload)

    async def _connect(self, endpoint: Endpoint) -> aiohttp.ClientWebSocketResponse:
        # The handshake needs its own deadline: the session's default is minutes long.
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await self._session.ws_connect(
                endpoint.connect_url(),
                heartbeat=self._keepalive_s,
                headers={"User-Agent": self._user_agent},
            )

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, endpoint: Endpoint) -> bool:
        started = self._clock()
        self._frames_on_socket = 0
        self._set_live(True)
        log.info("stream_connected host=%s", URL(endpoint.url).host)
        try:
            reason = await self._pump(ws)
        except _NETWORK_ERRORS as exc:
            reason = type(exc).__name__
        finally:
            self._set_live(False)
        log.info("stream_disconnected reason=%s", reason)
        return self._frames_on_socket > 0 or self._clock() - started >= self._healthy_after_s

    def _set_live(self, live: bool) -> None:
        self._metrics.stream_connected.set(1 if live else 0)
        if live:
            self.disconnected.clear()
            self.connected.set()
        else:
            self.connected.clear()
            self.disconnected.set()

    async def _pump(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Handle frames until the socket ends; return why it ended."""
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                if not await self._on_text(ws, msg.data):
                    await ws.close()
                    return "server_requested"
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self._count("unknown", "malformed")
            else:
                return _close_reason(ws)

    async def _on_text(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> bool:
        """Answer one frame; False when the gateway asked us to reconnect."""
        try:
            frame = frames.parse_frame(text)
        except FrameError as exc:
            # Without a messageId there is nothing to ACK; the gateway will time it out.
            log.warning("stream_frame_rejected type=unknown reason=%s", quoted(exc, always=True))
            self._count("unknown", "malformed")
            return True
        self._frames_on_socket += 1
        if frame.type == frames.CALLBACK:
            await self._on_callback(ws, frame)
        elif frame.type == frames.SYSTEM:
            return await self._on_system(ws, frame)
        elif frame.type == frames.EVENT:
            await ws.send_str(frames.encode_ack(frame.message_id, data=frames.EVENT_ACK_DATA))
            self._count("event", "ignored")
        else:
            await ws.send_str(frames.encode_ack(frame.message_id, code=frames.NOT_FOUND))
            self._count("unknown", "unknown_type")
        return True

    async def _on_callback(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
        if frame.topic != frames.BOT_TOPIC:
            await ws.send_str(frames.encode_ack(frame.message_id, code=frames.NOT_FOUND))
            self._count("callback", "unknown_topic")
            return
        # ACK first: a slow or failing handler must not make the gateway redeliver.
        await ws.send_str(frames.encode_ack(frame.message_id))
        self._count("callback", self._deliver(frame))

    def _deliver(self, frame: Frame) -> str:
        """Parse and submit a bot message; return the result label for metrics."""
        try:
            message = parse_message(frame.data.encode("utf-8"))
        except MessageError as exc:
            log.warning(
                "stream_frame_rejected message_id=%s reason=%s",
                quoted(frame.message_id),
                quoted(exc, always=True),
            )
            return "rejected"
        try:
            accepted = self._submit(message)
        except Exception:
            log.exception("stream_submit_failed msg_id=%s", quoted(message.msg_id))
            return "submit_failed"
        if accepted is None:
            return "overloaded"  # logged as reply_dropped by the pipeline
        return "submitted"

    async def _on_system(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> bool:
        if frame.topic == frames.DISCONNECT:
            log.info(
                "stream_disconnect_requested reason=%s",
                quoted(frames.disconnect_reason(frame.data), always=True),
            )
            self._count("system", "disconnect")
            return False
        # ping needs its `data` echoed; legacy topics (CONNECTED, KEEPALIVE…) get the same answer.
        await ws.send_str(frames.encode_ack(frame.message_id, data=frame.data))
        self._count("system", "pong" if frame.topic == frames.PING else "ignored")
        return True

    def _count(self, frame_type: str, result: str) -> None:
        self._metrics.stream_frames.labels(type=frame_type, result=result).inc()


def _close_reason(ws: aiohttp.ClientWebSocketResponse) -> str:
    exc = ws.exception()
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return "heartbeat_timeout"
    if exc is not None:
        return type(exc).__name__
    return f"closed code={ws.close_code}"
