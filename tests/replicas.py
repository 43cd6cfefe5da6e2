"""Several `responder serve` replicas on one Redis, as the process-level tests see them.

Two topologies behind one interface: two separate processes (each its own ports), or one
`serve --workers N` (one callback port shared through SO_REUSEPORT, one admin port whose
/metrics labels every sample with its worker). Messages are spread over the replicas: round
robin over the processes, or a fresh connection per request for the kernel to hand to a worker.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import signed_headers
from tests.process import ServerProcess

Counts = dict[str, float]


def samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called `name` (e.g. responder_messages_total) with its labels."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]


class Replicas:
    def __init__(self, servers: list[ServerProcess], workers: int) -> None:
        self.servers = servers
        self.workers = workers  # replicas behind one supervisor (0: separate processes)
        self._next = itertools.cycle(servers)

    @classmethod
    async def start(
        cls, config: Path, environ: dict[str, str], *, workers: int = 0, extra: tuple[str, ...] = ()
    ) -> Replicas:
        if workers:
            supervisor = await ServerProcess.start(config, "--workers", str(workers), *extra, environ=environ)
            return cls([supervisor], workers)
        servers = await asyncio.gather(
            *(ServerProcess.start(config, *extra, environ=environ) for _ in range(2))
        )
        return cls(list(servers), 0)

    @property
    def count(self) -> int:
        return self.workers or len(self.servers)

    async def post(self, body: dict[str, Any], path: str = "/dingtalk/callback") -> int:
        """One callback on a connection of its own, to the next replica (or worker, by the kernel)."""
        server = next(self._next)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            data = json.dumps(body)
            async with session.post(server.url + path, data=data, headers=signed_headers()) as response:
                await response.read()
                return response.status

    async def expositions(self, session: aiohttp.ClientSession) -> list[str]:
        return [str((await server.get(session, "/metrics"))[1]) for server in self.servers]

    async def per_replica(self, session: aiohttp.ClientSession, name: str, **labels: str) -> Counts:
        """`name`'s value per replica (summed over other labels): keyed by process index or worker."""
        totals: dict[str, float] = defaultdict(float)
        for index, exposition in enumerate(await self.expositions(session)):
            for found, value in samples(exposition, name):
                if all(found.get(k) == v for k, v in labels.items()):
                    totals[found.get("worker", str(index))] += value
        return dict(totals)

    async def statuses(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        """Each replica's /-/status (a worker's as the supervisor reports it)."""
        found = []
        for server in self.servers:
            status = await server.status(session)
            found += [w["status"] for w in status["workers"]] if self.workers else [status]
        return found

    async def wait_for(
        self,
        session: aiohttp.ClientSession,
        predicate: Callable[[], Awaitable[bool]],
        timeout: float = 15.0,
        what: str = "condition",
    ) -> None:
        deadline = time.monotonic() + timeout
        while not await predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never held:\n" + "\n".join(s.output for s in self.servers))
            await asyncio.sleep(0.05)  # polling interval under a deadline, not synchronisation

    async def settled(self, session: aiohttp.ClientSession, messages: int) -> Counts:
        """Wait until `messages` messages have ended (sent, skipped or dropped) across replicas."""
        counts: Counts = {}

        async def ended() -> bool:
            nonlocal counts
            counts = await self.per_replica(session, "responder_messages_total")
            return sum(counts.values()) >= messages

        await self.wait_for(session, ended, what=f"{messages} messages settled")
        return counts

    async def stop(self) -> list[int]:
        return list(await asyncio.gather(*(server.stop() for server in self.servers)))
