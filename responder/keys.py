"""Every aiohttp AppKey, in one place."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from aiohttp import web

from responder.dispatch import Dispatcher
from responder.metrics import Metrics
from responder.options import AppOptions
from responder.sources import SourceHub
from responder.store import RuleStore

STORE = web.AppKey("store", RuleStore)
OPTIONS = web.AppKey("options", AppOptions)
METRICS = web.AppKey("metrics", Metrics)
HTTP = web.AppKey("http", aiohttp.ClientSession)
SOURCES = web.AppKey("sources", SourceHub)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
# name -> is it ready? (the rules are loaded before serving; transports such as Stream add theirs)
READINESS = web.AppKey("readiness", dict[str, Callable[[], bool]])
