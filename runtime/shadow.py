"""Mirroring requests to a shadow candidate without slowing the callers down.

Mirrored requests wait in a bounded queue and go to the candidate in batches, one
handle call per batch at most every ``FLUSH_INTERVAL_S``: the cost of a call (and of
the candidate scoring) is paid once per batch instead of once per request, and falls
between callers' requests rather than on each of them. A full queue drops the request
(counted), never holds a caller.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from runtime.traffic import ArmStats, compare_predictions

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 64
MAX_QUEUED = 1024

Send = Callable[[str, list[bytes]], Awaitable[list[tuple[int, bytes, dict[str, str]]]]]


class ShadowMirror:
    def __init__(self, send: Send, stats_for: Callable[[str], ArmStats], changed: Callable[[], None]) -> None:
        self.send = send
        self.stats_for = stats_for
        self.changed = changed
        self.queue: deque[tuple[str, str, bytes, bytes]] = deque()
        self.task: asyncio.Task[None] | None = None

    def offer(self, key: str, app: str, body: bytes, stable_payload: bytes) -> None:
        if len(self.queue) >= MAX_QUEUED:
            self.stats_for(key).shadow_dropped += 1
            return
        self.queue.append((key, app, body, stable_payload))
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.queue:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            by_app: dict[str, list[tuple[str, str, bytes, bytes]]] = {}
            for item in batch:
                by_app.setdefault(item[1], []).append(item)
            for app, items in by_app.items():
                await self._mirror(app, items)
            self.changed()

    async def _mirror(self, app: str, items: list[tuple[str, str, bytes, bytes]]) -> None:
        try:
            answers: list[Any] = await self.send(app, [body for _, _, body, _ in items])
        except Exception:  # the candidate is gone or failed as a whole: every mirrored request failed
            answers = [(503, b"", {})] * len(items)
        for (key, _, _, stable_payload), (status, payload, _) in zip(items, answers, strict=False):
            stats = self.stats_for(key)
            stats.shadow_requests += 1
            if status != 200:
                stats.shadow_errors += 1
            else:
                stats.record_comparison(compare_predictions(stable_payload, payload))
