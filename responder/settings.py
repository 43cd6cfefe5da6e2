"""Settings, sorted by who may change them: a reload, or only a restart.

From rules.yaml's `dingtalk:` section, `DingTalkSettings` keeps two parts apart:

- `connection`: how DingTalk reaches this process (callback path, mode, the Stream credentials and
  OpenAPI base). Only start-up reads it; a reload that changes it is reported as
  `restart_required`, never half-applied.
- `policy`: what each request or send reads from the live snapshot (secrets, reply mode, allowed
  sessionWebhook origins, timeouts), so a reload applies it at once.

rules.yaml's `state:` section is `StateSettings`, restart-only like `connection`: the guards'
backend (and its Redis connection) is built once, at start-up.

Defaults for rules.yaml keys are the schema's own `default`s (see `schema.defaults`). Process
settings come from the command line (`Listen`, `AppOptions`); their defaults are the constants
here, which the CLI uses too. Several robots in one server would each be a `DingTalkSettings`
with its own rules file; nothing here assumes there is only one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_ADMIN_HOST = "127.0.0.1"
DEFAULT_ADMIN_PORT = 9180
DEFAULT_SHUTDOWN_GRACE_S = 10.0
DEFAULT_MAX_PENDING = 1000  # messages in progress before callbacks get 503
DEFAULT_MAX_CONNECTIONS = 1024  # open callback-port connections; more get 503 and are closed
# Idle keep-alive connections, and connections whose request headers never finish, are closed
# this long after they opened or after their last response.
DEFAULT_KEEPALIVE_TIMEOUT_S = 15.0
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_BODY_TIMEOUT_S = 10.0  # for the whole body, once the headers are in
# A reload waits until rules.yaml and its templates have not changed for this long.
DEFAULT_RELOAD_SETTLE_S = 1.0
# DingTalk: 20 messages a minute, else errcode 130101 and the robot is throttled for 10 minutes
# (dingtalk-protocol.md section 5). One extra second absorbs clock and network jitter.
DINGTALK_SENDS_PER_MINUTE = 20
DINGTALK_WINDOW_S = 61.0


@dataclass(frozen=True, slots=True)
class Connection:
    """Restart-only: read once, when the server starts listening or dialling out."""

    callback_path: str
    mode: str
    client_id: str
    client_secret: str = field(repr=False)
    api_base: str
    robot_code: str = ""  # OpenAPI sends; the client_id when not set
    openapi_monthly_calls: int | None = None

    @property
    def speaks_openapi(self) -> bool:
        """Whether OpenAPI sends are possible: the app's credentials are set."""
        return bool(self.client_id and self.client_secret)

    def changed_fields(self, other: Connection) -> tuple[str, ...]:
        """Names of the fields whose values differ from `other`'s (values never reported)."""
        return tuple(
            f.name for f in dataclasses.fields(self) if getattr(self, f.name) != getattr(other, f.name)
        )

    @property
    def serves_http(self) -> bool:
        return self.mode in ("http", "both")

    @property
    def serves_stream(self) -> bool:
        return self.mode in ("stream", "both")


@dataclass(frozen=True, slots=True)
class Policy:
    """Reloadable: read from the live snapshot by every request and every send."""

    app_secrets: tuple[str, ...] = field(repr=False)
    reply: str
    session_webhook_origins: tuple[str, ...]
    timestamp_window_ms: int
    webhook_timeout_s: float
    late_reply: str = "drop"  # "openapi": late replies go through the OpenAPI


@dataclass(frozen=True, slots=True)
class StateSettings:
    """Restart-only, from rules.yaml's `state:`: where the guards keep what replicas share."""

    backend: str  # "memory" or "redis"
    url: str = field(repr=False)  # may carry a password
    key_prefix: str
    timeout_s: float
    connect_timeout_s: float

    @property
    def shared(self) -> bool:
        """Whether several processes see the same claims, cooldowns and budget."""
        return self.backend == "redis"

    def changed_fields(self, other: StateSettings) -> tuple[str, ...]:
        """`state.<name>` of each field whose value differs from `other`'s (values never reported)."""
        return tuple(
            f"state.{f.name}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        )


@dataclass(frozen=True, slots=True)
class DingTalkSettings:
    connection: Connection
    policy: Policy


@dataclass(frozen=True, slots=True)
class Listen:
    """Where `responder serve` listens, and the limits it applies to its connections."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    admin_host: str = DEFAULT_ADMIN_HOST
    admin_port: int | None = DEFAULT_ADMIN_PORT
    pid_file: Path | None = None
    reload_endpoint: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keepalive_timeout_s: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    notify_socket: str = ""  # systemd's $NOTIFY_SOCKET: told READY=1 once both ports listen
    watch: bool = False  # reload when rules.yaml or a template changes on disk
    # Set in a `--workers` worker: its admin endpoints answer the supervisor on this Unix socket,
    # it shares the callback port (SO_REUSEPORT), and reloads come only from the supervisor.
    control_socket: Path | None = None


@dataclass(frozen=True, slots=True)
class AppOptions:
    """Process-level options of the callback app (from the command line, not rules.yaml)."""

    dev: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    clock: Callable[[], float] = time.time
    max_pending: int = DEFAULT_MAX_PENDING
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S  # how long pending replies may take on shutdown
    sends_per_window: int = DINGTALK_SENDS_PER_MINUTE  # per conversation
    send_window_s: float = DINGTALK_WINDOW_S

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
