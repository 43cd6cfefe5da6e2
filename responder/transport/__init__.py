"""Transports: how messages arrive and how the process is operated. They know HTTP and
WebSockets and hand parsed messages to the pipeline; they decide nothing about replies.

`callback` (DingTalk's HTTP callback), `stream` (Stream mode's WebSocket, with `backoff`),
`admin` (health, status, metrics, reload), `playground` (the dev page), `site` (the callback
port's connection limits) and `loopback` (the one test for a local address).
"""
