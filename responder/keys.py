"""Every aiohttp AppKey, in one place."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from responder.delivery.late import OpenApiSink
from responder.delivery.pipeline import Pipeline
from responder.delivery.webhook import WebhookSink
from responder.logs import Throttle
from responder.metrics import Metrics
from responder.rules.store import RuleStore
from responder.settings import AppOptions
from responder.sources import SourceHub
from responder.state import StateBackend

STORE = web.AppKey("store", RuleStore)
OPTIONS = web.AppKey("options", AppOptions)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SOURCES = web.AppKey("sources", SourceHub)
PIPELINE = web.AppKey("pipeline", Pipeline)
STATE = web.AppKey("state", StateBackend)  # the guards' backend: memory or Redis (state:)
WEBHOOK = web.AppKey("webhook", WebhookSink)
OPENAPI = web.AppKey("openapi", OpenApiSink)  # only when the app's credentials are set
# name -> is it ready? (the rules are loaded before serving; transports such as Stream add theirs)
# Lines anyone can trigger (refused signatures) are rate-limited per app.
LOG_THROTTLE = web.AppKey("log_throttle", Throttle)
READINESS = web.AppKey("readiness", dict[str, Callable[[], bool]])
# name -> what /-/status shows of it (pushes, schedules), read when asked.
STATUS_SECTIONS = web.AppKey("status_sections", dict[str, Callable[[], object]])
