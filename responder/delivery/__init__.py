"""Delivery: the one path every message takes (`pipeline`) and what it consults on the way.

`gate` (overload), `claims` (the msgId ledger), `budget` (DingTalk's send limit) and the sinks a
reply goes to: `sinks` (the HTTP response body) and `webhook` (the sessionWebhook). `openapi`
is the robot OpenAPI client (token, backoff, call cap; helpers in `openapi_*`), not yet a sink.
"""
