"""The command line: serve, check, try, send, sign.

Exit codes: 0 ok; 1 bad rules (check, try) or a runtime failure of serve (the port is taken);
2 a bad command line; 78 (EX_CONFIG, sysexits.h) serve cannot start with its configuration (bad
rules, no secret, an unusable --log-file), which a restart would not cure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from responder import __version__, dingtalk, serve, settings
from responder.app import create_app
from responder.authoring import announcements, explain, lint
from responder.delivery import oneshot
from responder.delivery.pipeline import Handled, answer_once
from responder.engine.answer import Fixtures, LiveSources, SourceAnswers
from responder.logs import LoggingHandle, setup_logging
from responder.metrics import Metrics
from responder.rules.load import load_rules
from responder.rules.model import RulesError, RuleSet
from responder.rules.store import RuleStore
from responder.serve import EarlySignals
from responder.settings import AppOptions, Listen
from responder.sources import SourceHub
from responder.transport.loopback import is_loopback
from responder.transport.playground import PREFIX as PLAYGROUND_PREFIX
from responder.transport.playground import add_playground
from responder.workers import control
from responder.workers import supervisor as workers

log = logging.getLogger("responder")

SECRET_VARIABLE = "DINGTALK_APP_SECRET"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line
# sysexits.h EX_CONFIG. Distinct from 1 so a supervisor can tell "fix the file" from "try again":
# the systemd unit sets RestartPreventExitStatus=78.
EXIT_CONFIG = 78


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    # First of all: the default SIGHUP action kills the process. Until the reload handler is
    # installed, a SIGHUP is only remembered (and triggers a reload once serving).
    early = EarlySignals()
    args = _parser().parse_args(argv)
    args.early_signals = early
    environ = os.environ if environ is None else environ
    return int(args.run(args, environ))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="responder", description="DingTalk chatbot responder")
    parser.add_argument("--version", action="version", version=f"responder {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the callback server")
    _config_option(serve)
    serve.add_argument(
        "--host", default=settings.DEFAULT_HOST, help=f"address to bind (default {settings.DEFAULT_HOST})"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=settings.DEFAULT_PORT,
        help=f"port to bind (default {settings.DEFAULT_PORT}; 0 picks one)",
    )
    serve.add_argument(
        "--admin-host", default=settings.DEFAULT_ADMIN_HOST, help="address for the admin endpoints"
    )
    serve.add_argument(
        "--admin-port",
        type=int,
        default=settings.DEFAULT_ADMIN_PORT,
        help=f"port for /metrics, /-/status, /-/healthy, /-/ready (default {settings.DEFAULT_ADMIN_PORT}; "
        "-1 disables)",
    )
    serve.add_argument(
        "--max-connections",
        type=_positive_int,
        default=settings.DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"open connections on the callback port before new ones get 503 (default "
        f"{settings.DEFAULT_MAX_CONNECTIONS}, lowered to fit the descriptor limit)",
    )
    serve.add_argument(
        "--keepalive-timeout",
        type=_positive_float,
        default=settings.DEFAULT_KEEPALIVE_TIMEOUT_S,
        metavar="SECONDS",
        help="close idle connections, and connections whose request headers have not arrived, after "
        f"this long (default {settings.DEFAULT_KEEPALIVE_TIMEOUT_S:g})",
    )
    serve.add_argument("--pid-file", type=Path, help="write the process id here (for kill -HUP)")
    serve.add_argument(
        "--enable-reload-endpoint",
        action="store_true",
        help="accept POST /-/reload on the admin port (loopback clients only)",
    )
    serve.add_argument(
        "--log-format",
        choices=("human", "json"),
        default="human",
        help="human-readable lines or JSON lines (default human)",
    )
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    serve.add_argument(
        "--log-file",
        type=Path,
        help="write logs to this file (rotated by size) instead of stderr; a record the file cannot "
        "take (a full disk) goes to stderr",
    )
    serve.add_argument(
        "--reload-settle",
        type=float,
        default=settings.DEFAULT_RELOAD_SETTLE_S,
        metavar="SECONDS",
        help="a reload waits until rules.yaml and its templates have not changed for this long "
        f"(default {settings.DEFAULT_RELOAD_SETTLE_S:g}; 0 reads at once)",
    )
    serve.add_argument(
        "--shutdown-grace",
        type=float,
        default=settings.DEFAULT_SHUTDOWN_GRACE_S,
        metavar="SECONDS",
        help=f"on SIGTERM, how long pending replies may take (default {settings.DEFAULT_SHUTDOWN_GRACE_S:g})",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: loopback only, unsigned requests allowed when no secret is set",
    )
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N worker processes on the one port (SO_REUSEPORT) under a supervisor that owns the "
        "admin port, pid file and signals; N > 1 needs state.backend: redis (default 1)",
    )
    serve.add_argument(
        "--watch",
        action="store_true",
        help="reload when rules.yaml, its folder (a ConfigMap's ..data swap) or templates/ change",
    )
    # A worker's link to its --workers supervisor (set by the supervisor, never by hand).
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-socket", type=Path, help=argparse.SUPPRESS)
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="validate rules.yaml and its templates")
    _config_option(check)
    check.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1)")
    check.add_argument(
        "--no-examples", dest="examples", action="store_false", help="do not run the rules' examples"
    )
    check.set_defaults(run=_check)

    try_ = commands.add_parser(
        "try", help="show what the server would send for TEXT, a schedule's next slot, or a push's payload"
    )
    _config_option(try_)
    # The rest of the command line is the message, so `responder try weather 杭州` needs no quotes.
    try_.add_argument(
        "text",
        metavar="TEXT",
        nargs="*",
        help="the message; several words are joined by spaces (with --push: the payload file, - for stdin)",
    )
    speaker = try_.add_mutually_exclusive_group()
    speaker.add_argument("--schedule", metavar="NAME", help="what the schedule's next slot would send")
    speaker.add_argument(
        "--push", metavar="NAME", help="what POSTing the payload FILE to /push/NAME would send"
    )
    try_.add_argument("--nick", default="Tester", help="sender nick (default Tester)")
    try_.add_argument("--staff-id", default="tester", help="sender staff id (default tester)")
    try_.add_argument("--private", action="store_true", help="a 1:1 chat instead of a group")
    try_.add_argument("--admin", action="store_true", help="the sender is an org admin")
    try_.add_argument("--offline", action="store_true", help="answer sources with each rule's fixture")
    try_.add_argument("--explain", action="store_true", help="show why each rule did or did not match")
    try_.set_defaults(run=_try)

    send = commands.add_parser("send", help="send a message now through DingTalk's OpenAPI (for scripts)")
    _config_option(send)
    send.add_argument(
        "text", metavar="TEXT", nargs="?", help="the message, sent as it is (escaped in markdown)"
    )
    send.add_argument(
        "--to", action="append", default=[], metavar="CID", help="a group's conversationId (repeatable)"
    )
    send.add_argument(
        "--user", action="append", default=[], metavar="STAFF_ID", help="a person's 1:1 chat (repeatable)"
    )
    send.add_argument("--template", type=Path, metavar="FILE", help="render this Jinja2 file instead of TEXT")
    send.add_argument(
        "--msgtype", choices=("text", "markdown"), help="default: markdown for a .md template, else text"
    )
    send.add_argument("--title", help="markdown's title (the notification preview); required for markdown")
    send.set_defaults(run=_send)

    sign = commands.add_parser("sign", help="print timestamp and sign headers for a callback")
    sign.add_argument(
        "--secret", help=f"the robot's AppSecret (default: ${SECRET_VARIABLE}, which keeps it out of `ps`)"
    )
    sign.add_argument("--timestamp", help="milliseconds since the epoch (default now)")
    sign.set_defaults(run=_sign)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("rules.yaml"),
        metavar="PATH",
        help="rules file (default ./rules.yaml); templates/ next to it",
    )


def _load(args: argparse.Namespace, environ: Mapping[str, str]) -> RuleSet | None:
    try:
        return load_rules(args.config, environ)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        print(f"{args.config}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return None


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep the server's log lines (which `check` has not set up) off stderr."""
    logger, null = logging.getLogger("responder"), logging.NullHandler()
    logger.addHandler(null)
    try:
        yield
    finally:
        logger.removeHandler(null)


def _check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = _load(args, environ)
    if ruleset is None:
        return EXIT_FAILURE
    with _quiet_logs():  # a failing example's render_failed line would repeat its finding
        review = asyncio.run(lint.review(ruleset, run_examples=args.examples))
    for line in review.lines():
        print(line, file=sys.stderr)
    if not review.ok(strict=args.strict):
        print(f"{args.config}: FAILED, {review.summary()}", file=sys.stderr)
        return EXIT_FAILURE
    for line in announcements.schedule_lines(ruleset):
        print(line)
    counts = f"{len(ruleset.rules)} rules, {len(ruleset.sources)} sources"
    if ruleset.schedules:
        counts += f", {len(ruleset.schedules)} schedules"
    if ruleset.pushes:
        counts += f", {len(ruleset.pushes)} pushes"
    print(f"{args.config}: OK, {counts}, {review.summary()}, sha256 {ruleset.sha256[:12]}")
    return EXIT_OK


def _try(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.schedule is not None or args.push is not None:
        return _try_announcement(args, environ)
    if not args.text:
        print("responder try: say what to try: TEXT, --schedule NAME or --push NAME FILE", file=sys.stderr)
        return EXIT_USAGE
    ruleset = _load(args, environ)
    if ruleset is None:
        return EXIT_FAILURE
    message = sample_message(" ".join(args.text), args.nick, args.staff_id, not args.private, args.admin)
    if args.explain:
        print(explain.format_verdicts(ruleset.matcher.explain(message)), file=sys.stderr)
    handled, body = asyncio.run(_answer(message, ruleset, offline=args.offline))
    print(f"rule: {handled.rule or '(none)'} ({handled.reason})", file=sys.stderr)
    if body is not None:
        sys.stdout.write(dingtalk.dumps(body).decode() + "\n")
    return EXIT_OK


def _try_announcement(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.push is not None and len(args.text) != 1:
        print("responder try --push NAME FILE: give the payload file (- for stdin)", file=sys.stderr)
        return EXIT_USAGE
    if args.schedule is not None and args.text:
        print("responder try --schedule NAME takes no TEXT", file=sys.stderr)
        return EXIT_USAGE
    ruleset = _load(args, environ)
    if ruleset is None:
        return EXIT_FAILURE
    try:
        body = b"" if args.push is None else _read_payload(args.text[0])
        tried = asyncio.run(_announce(ruleset, args, body))
    except (announcements.TryError, OSError) as exc:
        print(f"responder try: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(tried.note, file=sys.stderr)
    for message in tried.sent:
        sys.stdout.write(dingtalk.dumps(message).decode() + "\n")
    if tried.render_error:
        print(f"render failed: {tried.render_error}", file=sys.stderr)
        return EXIT_FAILURE
    unsent = [h for h in tried.handled if h.outcome != "sent"]
    for handled in unsent:
        print(f"not sent: {handled.reason}", file=sys.stderr)
    return EXIT_FAILURE if unsent or not tried.sent else EXIT_OK


def _read_payload(name: str) -> bytes:
    return sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()


async def _announce(ruleset: RuleSet, args: argparse.Namespace, body: bytes) -> announcements.Tried:
    async with _sources(offline=args.offline) as sources:
        if args.schedule is not None:
            return await announcements.try_schedule(ruleset, args.schedule, sources)
        return await announcements.try_push(ruleset, args.push, body, sources)


def _send(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    problem = _send_usage(args)
    if problem:
        print(f"responder send: {problem}", file=sys.stderr)
        return EXIT_USAGE
    ruleset = _load(args, environ)
    if ruleset is None:
        return EXIT_FAILURE
    msgtype = args.msgtype or ("markdown" if args.template and ".md" in args.template.suffixes else "text")
    if msgtype == "markdown" and not args.title:
        print("responder send: markdown needs --title (the notification preview)", file=sys.stderr)
        return EXIT_USAGE
    outgoing = oneshot.Outgoing(
        oneshot.targets_from(args.to, args.user), msgtype, args.text, args.template, args.title
    )
    try:
        with _quiet_logs():  # each target's line below says how it went
            handled = asyncio.run(oneshot.send(outgoing, ruleset))
    except oneshot.SendError as exc:
        print(f"responder send: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for target, result in zip(outgoing.targets, handled, strict=True):
        reason = "" if result.outcome == "sent" else f" ({result.reason})"
        print(f"{target.kind} {target.id}: {result.outcome}{reason}", file=sys.stderr)
    return EXIT_OK if all(h.outcome == "sent" and not h.render_error for h in handled) else EXIT_FAILURE


def _send_usage(args: argparse.Namespace) -> str:
    if not args.to and not args.user:
        return "say where: --to CID and/or --user STAFF_ID"
    if (args.text is None) == (args.template is None):
        return "give TEXT or --template FILE (one of them)"
    return ""


@contextlib.asynccontextmanager
async def _sources(*, offline: bool) -> AsyncIterator[SourceAnswers]:
    """Where `try` gets source data: the rules' fixtures, or the live sources."""
    if offline:
        yield Fixtures()
        return
    async with aiohttp.ClientSession() as session:
        hub = SourceHub(session)
        try:
            yield LiveSources(hub)
        finally:
            await hub.close()


async def _answer(
    message: dingtalk.Message, ruleset: RuleSet, *, offline: bool
) -> tuple[Handled, dict[str, Any] | None]:
    async with _sources(offline=offline) as sources:
        return await answer_once(message, ruleset, sources)


def sample_message(text: str, nick: str, staff_id: str, is_group: bool, is_admin: bool) -> dingtalk.Message:
    """The message `responder try` answers, as DingTalk would deliver it."""
    now_ms = int(time.time() * 1000)
    return dingtalk.offline_message(
        text,
        msg_id=f"try-{now_ms}",
        conversation_id="cidTRY",
        nick=nick,
        staff_id=staff_id,
        is_group=is_group,
        is_admin=is_admin,
        created_ms=now_ms,
    )


def _sign(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    secret = args.secret if args.secret is not None else environ.get(SECRET_VARIABLE, "")
    if not secret:
        print(f"responder sign: no secret: pass --secret or set {SECRET_VARIABLE}", file=sys.stderr)
        return EXIT_USAGE
    timestamp = args.timestamp or str(int(time.time() * 1000))
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) == 13):
        print("responder sign: --timestamp must be 13 digits (milliseconds)", file=sys.stderr)
        return EXIT_USAGE
    print(f"timestamp: {timestamp}")
    print(f"sign: {dingtalk.sign(secret, timestamp)}")
    return EXIT_OK


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    try:
        logging_handle = setup_logging(
            fmt=args.log_format, level=args.log_level, log_file=args.log_file, secrets=_secrets(environ)
        )
    except (OSError, ValueError) as exc:
        print(f"responder serve: cannot set up logging: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _serve_logged(args, environ, logging_handle)
    finally:
        logging_handle.close()


def _secrets(environ: Mapping[str, str]) -> list[str]:
    """Values that must never reach a log line, even if a template or an error echoes them."""
    names = (SECRET_VARIABLE, "DINGTALK_CLIENT_SECRET")
    return [environ[name] for name in names if len(environ.get(name, "")) >= 6]


def _serve_logged(args: argparse.Namespace, environ: Mapping[str, str], logging_handle: LoggingHandle) -> int:
    if args.worker_socket is not None:
        logging_handle.add_fields(worker=args.worker_index)
    log.info("starting version=%s config=%s pid=%d", __version__, args.config, os.getpid())
    ruleset = _serve_load(args, environ)
    if ruleset is None:
        return EXIT_CONFIG
    refusal = _refuse_unsigned(ruleset, args) or _serve_workers_refusal(ruleset, args)
    if refusal:
        print(f"responder serve: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    if not ruleset.dingtalk.policy.app_secrets and ruleset.dingtalk.connection.serves_http:
        log.warning("dev_mode_unsigned DEVELOPMENT MODE: callbacks are NOT authenticated (no app_secret)")
    store = RuleStore(ruleset, environ, settle_s=args.reload_settle)
    logging_handle.redact_also(ruleset.secrets)
    store.subscribe(lambda new: logging_handle.redact_also(new.secrets))
    if args.workers > 1:
        return _serve_workers(args, environ, store)
    options = AppOptions(dev=args.dev, shutdown_grace_s=args.shutdown_grace)
    app = create_app(store, options, _metrics_for(logging_handle))
    on_listening = serve.nothing
    if args.dev and is_loopback(args.host):
        add_playground(app)
        on_listening = _announce_playground
    elif args.dev:
        log.warning("playground_disabled reason=not_loopback host=%s", args.host)
    listen = _serve_listen(args, environ)
    return _serve_until_stopped(serve.run(app, listen, args.early_signals, on_listening=on_listening))


def _serve_load(args: argparse.Namespace, environ: Mapping[str, str]) -> RuleSet | None:
    """The rules to serve: from --config, or in a worker, the file its supervisor loaded."""
    if args.worker_socket is None:
        return _load(args, environ)
    try:
        return load_rules(args.config, environ, content=control.read_rules(sys.stdin.buffer))
    except (RulesError, EOFError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return None


def _serve_listen(args: argparse.Namespace, environ: Mapping[str, str]) -> Listen:
    return Listen(
        host=args.host,
        port=args.port,
        admin_host=args.admin_host,
        admin_port=None if args.admin_port < 0 else args.admin_port,
        pid_file=args.pid_file,
        reload_endpoint=args.enable_reload_endpoint,
        max_connections=args.max_connections,
        keepalive_timeout_s=args.keepalive_timeout,
        # systemd hears from the process it started: the supervisor, never a worker.
        notify_socket="" if args.worker_socket else environ.get("NOTIFY_SOCKET", ""),
        watch=args.watch,
        control_socket=args.worker_socket,
    )


def _serve_until_stopped(serving: Coroutine[Any, Any, int]) -> int:
    try:
        with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
            return runner.run(serving)
    except OSError as exc:
        log.error("listen_failed error=%s", exc.strerror or exc)
        return EXIT_FAILURE


def _announce_playground(url: str) -> None:
    """Logged once the port is bound, so the URL is one a newcomer can click (even with --port 0)."""
    log.info("playground_enabled url=%s%s/", url, PLAYGROUND_PREFIX)


def _serve_workers(args: argparse.Namespace, environ: Mapping[str, str], store: RuleStore) -> int:
    """The --workers supervisor: it loaded the rules; its workers serve them."""
    argv = partial(_serve_worker_argv, args)
    listen = _serve_listen(args, environ)
    return _serve_until_stopped(
        workers.supervise(store, listen, args.workers, argv, args.early_signals, args.shutdown_grace)
    )


def _serve_worker_argv(args: argparse.Namespace, port: int, index: int, socket: Path) -> list[str]:
    """One worker's command: this serve's own options, on the port the supervisor checked."""
    argv = [sys.executable, "-m", "responder", "serve", "--config", str(args.config), "--host", args.host]
    argv += ["--port", str(port), "--admin-port", "-1", "--max-connections", str(args.max_connections)]
    argv += [
        "--keepalive-timeout",
        repr(args.keepalive_timeout),
        "--shutdown-grace",
        repr(args.shutdown_grace),
    ]
    argv += ["--log-format", args.log_format, "--log-level", args.log_level]
    argv += ["--worker-index", str(index), "--worker-socket", str(socket)]
    return [*argv, "--dev"] if args.dev else argv


def _serve_workers_refusal(ruleset: RuleSet, args: argparse.Namespace) -> str:
    if args.workers == 1:
        return ""
    if not ruleset.state.shared:
        return (
            f"--workers {args.workers} needs state.backend: redis in rules.yaml: with backend memory "
            "each worker keeps its own msgId claims, cooldowns and send budget, so a redelivery "
            "could be answered twice and a group sent more than DingTalk allows"
        )
    if args.log_file is not None:
        return "--log-file cannot be used with --workers (one file, several writers): log to stderr"
    return ""


def _metrics_for(logging_handle: LoggingHandle) -> Metrics:
    metrics = Metrics()
    metrics.log_records_lost.labels("queue_full").set_function(lambda: logging_handle.dropped)
    metrics.log_records_lost.labels("write_failed").set_function(lambda: logging_handle.write_errors)
    return metrics


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop (a dependency wherever it installs: not on Windows or PyPy), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        log.info("event_loop name=asyncio")
        return None
    log.info("event_loop name=uvloop version=%s", uvloop.__version__)  # type: ignore[attr-defined]
    return uvloop.new_event_loop


def _refuse_unsigned(ruleset: RuleSet, args: argparse.Namespace) -> str:
    if ruleset.dingtalk.policy.app_secrets or not ruleset.dingtalk.connection.serves_http:
        return ""
    if not args.dev:
        return "no dingtalk.app_secret is set; set DINGTALK_APP_SECRET, or use --dev on a loopback address"
    if not is_loopback(args.host):
        return f"--dev without an app_secret only binds to loopback, not {args.host}"
    return ""
