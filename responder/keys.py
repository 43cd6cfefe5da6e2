"""Every aiohttp AppKey, in one place."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from responder.metrics import Metrics
from responder.pipeline import Pipeline
from responder.settings import AppOptions
from responder.sinks import WebhookSink
from responder.sources import SourceHub
from responder.store import RuleStore

STORE = web.AppKey("store", RuleStore)
OPTIONS = web.AppKey("options", AppOptions)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SOURCES = web.AppKey("sources", SourceHub)
PIPELINE = web.AppKey("pipeline", Pipeline)
WEBHOOK = web.AppKey("webhook", WebhookSink)
# name -> is it ready? (the rules are loaded before serving; transports such as Stream add theirs)
READINESS = web.AppKey("readiness", dict[str, Callable[[], bool]])
