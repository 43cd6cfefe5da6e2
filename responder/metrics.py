"""Prometheus metrics, one registry per application (no process-global collectors)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every metric responder exports. Create one per app; tests get a fresh one each."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "responder_requests", "Callback requests by HTTP status.", ["status"], registry=r
        )
        self.auth_failures = Counter(
            "responder_auth_failures",
            "Rejected callback signatures by reason.",
            ["reason"],
            registry=r,
        )
        self.replies = Counter(
            "responder_replies",
            "Replies by rule and result (sent, skipped, dropped).",
            ["rule", "result"],
            registry=r,
        )
        self.messages = Counter(
            "responder_messages",
            "Accepted messages by final outcome (sent, skipped, dropped).",
            ["outcome"],
            registry=r,
        )
        self.render_errors = Counter(
            "responder_render_errors",
            "Template errors while rendering a reply.",
            ["rule"],
            registry=r,
        )
        self.source_calls = Counter(
            "responder_source_calls",
            "Data-source calls by result.",
            ["source", "result"],
            registry=r,
        )
        self.source_latency = Histogram(
            "responder_source_latency_seconds",
            "Data-source call latency.",
            ["source"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
        )
        self.source_cache_hits = Counter(
            "responder_source_cache_hits",
            "Data-source answers served from cache.",
            ["source"],
            registry=r,
        )
        self.reload_successful = Gauge(
            "responder_rules_last_reload_successful",
            "1 if the last rules load succeeded.",
            registry=r,
        )
        self.reload_success_timestamp = Gauge(
            "responder_rules_last_reload_success_timestamp_seconds",
            "Unix time of the last successful rules load.",
            registry=r,
        )
        self.restart_required = Gauge(
            "responder_restart_required",
            "1 while the live rules.yaml changes a restart-only setting that is not applied yet.",
            registry=r,
        )
        self.rules_loaded = Gauge("responder_rules_loaded", "Rules in the live snapshot.", registry=r)
        self.rules_info = Gauge(
            "responder_rules_info",
            "The live rules snapshot (value is always 1).",
            ["sha256", "generation"],
            registry=r,
        )
        self.pushes = Counter(
            "responder_pushes",
            "Inbound pushes (POST /push/NAME) by push and result (accepted, http_401, ...).",
            ["push", "result"],
            registry=r,
        )
        self.log_records_lost = Gauge(
            "responder_log_records_lost",
            "Log records not written as asked, by reason: queue_full (dropped), write_failed (a "
            "sink failed; a record the log file could not take was written to stderr instead).",
            ["reason"],
            registry=r,
        )
        self.pending = Gauge("responder_replies_pending", "Messages being answered right now.", registry=r)
        self.stream_connected = Gauge(
            "responder_stream_connected", "1 while the Stream-mode WebSocket is up.", registry=r
        )
        self.stream_reconnects = Counter(
            "responder_stream_reconnects", "Stream-mode reconnect attempts.", registry=r
        )
        self.stream_frames = Counter(
            "responder_stream_frames",
            "Stream-mode frames by type and result.",
            ["type", "result"],
            registry=r,
        )

        self.openapi_calls = Counter(
            "responder_openapi_calls",
            "Robot OpenAPI calls made, by API (token, group_send, user_send) and result.",
            ["api", "result"],
            registry=r,
        )
        self.openapi_refusals = Counter(
            "responder_openapi_refusals",
            "OpenAPI sends refused: by DingTalk (qps_limited, quota_exhausted, flow_controlled) "
            "or here without a call (backoff, call_cap).",
            ["reason"],
            registry=r,
        )
        self.openapi_calls_this_month = Gauge(
            "responder_openapi_calls_this_month",
            "Metered OpenAPI calls (sends, not tokens) made this calendar month, UTC, since start.",
            registry=r,
        )

        self.state_backend_up = Gauge(
            "responder_state_backend_up",
            "1 while the state backend (state.backend) answers; 0 while the guards fall back to "
            "this process's memory (Redis unreachable). Always 1 with backend memory.",
            registry=r,
        )
        self.state_fallbacks = Counter(
            "responder_state_fallbacks",
            "Guard calls answered from this process's memory because Redis was unavailable, by "
            "guard (claims, cooldowns, budget).",
            ["guard"],
            registry=r,
        )

        self.schedule_fires = Counter(
            "responder_schedule_fires",
            "Schedule slots by result: what fire answered (sent, skipped, dropped), or missed, busy "
            "(the previous fire still running), not_ours (another replica's), ledger_full, "
            "ledger_failed, failed.",
            ["schedule", "result"],
            registry=r,
        )
        self.schedule_next_fire = Gauge(
            "responder_schedule_next_fire_timestamp_seconds",
            "Unix time of each schedule's next slot.",
            ["schedule"],
            registry=r,
        )
        # Children of the per-message counters, looked up once: labels() validates and locks.
        self._handled: dict[tuple[str, str], tuple[Counter, Counter]] = {}
        self._statuses: dict[int, Counter] = {}

    def count_handled(self, rule: str, outcome: str) -> None:
        """One message ended: `messages{outcome}` and `replies{rule, result}`."""
        children = self._handled.get((rule, outcome))
        if children is None:
            children = self._handled[rule, outcome] = (
                self.messages.labels(outcome),
                self.replies.labels(rule, outcome),
            )
        children[0].inc()
        children[1].inc()

    def count_request(self, status: int) -> None:
        child = self._statuses.get(status)
        if child is None:
            child = self._statuses[status] = self.requests.labels(str(status))
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
