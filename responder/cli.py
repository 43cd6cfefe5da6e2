"""The command line: serve, check, try, sign. Exit codes: 0 ok, 1 bad rules or runtime error, 2 usage."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
from aiohttp import web

from responder import __version__, bot, dingtalk
from responder.app import create_app
from responder.loader import load_rules
from responder.options import AppOptions
from responder.playground import add_playground
from responder.rules import RulesError, RuleSet
from responder.sources import SourceHub
from responder.store import RuleStore

log = logging.getLogger("responder")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    # The default SIGHUP action kills the process; ignore it until the reload handler is in place.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = _parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    return int(args.run(args, environ))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="responder", description="DingTalk chatbot responder")
    parser.add_argument("--version", action="version", version=f"responder {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the callback server")
    _config_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development mode: loopback only, unsigned requests allowed when no secret is set",
    )
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="validate rules.yaml and its templates")
    _config_option(check)
    check.set_defaults(run=_check)

    try_ = commands.add_parser("try", help="show the reply the server would send for TEXT")
    _config_option(try_)
    try_.add_argument("text", metavar="TEXT")
    try_.add_argument("--nick", default="Tester", help="sender nick (default Tester)")
    try_.add_argument("--staff-id", default="tester", help="sender staff id (default tester)")
    try_.add_argument("--private", action="store_true", help="a 1:1 chat instead of a group")
    try_.add_argument("--admin", action="store_true", help="the sender is an org admin")
    try_.add_argument("--offline", action="store_true", help="answer sources with each rule's fixture")
    try_.set_defaults(run=_try)

    sign = commands.add_parser("sign", help="print timestamp and sign headers for a callback")
    sign.add_argument("--secret", required=True, help="the robot's AppSecret")
    sign.add_argument("--timestamp", help="milliseconds since the epoch (default now)")
    sign.set_defaults(run=_sign)
    return parser


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


def _check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = _load(args, environ)
    if ruleset is None:
        return 1
    print(
        f"{args.config}: OK, {len(ruleset.rules)} rules, {len(ruleset.sources)} sources, "
        f"sha256 {ruleset.sha256[:12]}"
    )
    return 0


def _try(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = _load(args, environ)
    if ruleset is None:
        return 1
    message = sample_message(args.text, args.nick, args.staff_id, not args.private, args.admin)
    outcome = asyncio.run(_answer(message, ruleset, offline=args.offline))
    print(f"rule: {outcome.rule or '(none)'} ({outcome.reason})", file=sys.stderr)
    if outcome.reply is not None:
        sys.stdout.write(dingtalk.dumps(dingtalk.encode_reply(outcome.reply)).decode() + "\n")
    return 0


async def _answer(message: dingtalk.Message, ruleset: RuleSet, *, offline: bool) -> bot.Outcome:
    if offline:
        return await bot.answer(message, ruleset, None)
    async with aiohttp.ClientSession() as session:
        return await bot.answer(message, ruleset, SourceHub(session).fetch)


def sample_message(text: str, nick: str, staff_id: str, is_group: bool, is_admin: bool) -> dingtalk.Message:
    """A message as DingTalk would deliver it, for `try` and the playground."""
    now_ms = int(time.time() * 1000)
    return dingtalk.Message(
        msg_id=f"try-{now_ms}",
        msgtype="text",
        text=text,
        conversation_id="cidTRY",
        is_group=is_group,
        conversation_title="responder try" if is_group else "",
        sender_nick=nick,
        sender_staff_id=staff_id,
        sender_id="",
        is_admin=is_admin,
        session_webhook="",
        session_webhook_expires_ms=None,
        created_ms=now_ms,
        robot_code="",
    )


def _sign(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    timestamp = args.timestamp or str(int(time.time() * 1000))
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) == 13):
        print("responder sign: --timestamp must be 13 digits (milliseconds)", file=sys.stderr)
        return 2
    print(f"timestamp: {timestamp}")
    print(f"sign: {dingtalk.sign(args.secret, timestamp)}")
    return 0


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ruleset = _load(args, environ)
    if ruleset is None:
        return 1
    refusal = _refuse_unsigned(ruleset, args)
    if refusal:
        print(f"responder serve: {refusal}", file=sys.stderr)
        return 1
    if not ruleset.dingtalk.app_secrets:
        log.warning("dev_mode_unsigned DEVELOPMENT MODE: callbacks are NOT authenticated (no app_secret)")
    store = RuleStore(ruleset, environ)
    app = create_app(store, AppOptions(dev=args.dev))
    app.cleanup_ctx.append(_reload_on_sighup(store))
    if args.dev and _is_loopback(args.host):
        add_playground(app)
        log.info("playground_enabled url=http://%s:%d/-/playground/", args.host, args.port)
    elif args.dev:
        log.warning("playground_disabled reason=not_loopback host=%s", args.host)
    log.info(
        "serving host=%s port=%d callback_path=%s",
        args.host,
        args.port,
        ruleset.dingtalk.callback_path,
    )
    web.run_app(app, host=args.host, port=args.port, print=None, handle_signals=True)
    return 0


def _refuse_unsigned(ruleset: RuleSet, args: argparse.Namespace) -> str:
    if ruleset.dingtalk.app_secrets:
        return ""
    if not args.dev:
        return "no dingtalk.app_secret is set; set DINGTALK_APP_SECRET, or use --dev on a loopback address"
    if not _is_loopback(args.host):
        return f"--dev without an app_secret only binds to loopback, not {args.host}"
    return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reload_on_sighup(store: RuleStore):  # type: ignore[no-untyped-def]
    async def context(app: web.Application):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[object]] = set()

        def on_sighup() -> None:
            task = loop.create_task(store.reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        yield
        loop.remove_signal_handler(signal.SIGHUP)

    return context
