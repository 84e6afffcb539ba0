"""Handing a share of an ingress's requests to its drift monitors without slowing callers.

Each tap names a monitor, the share of answered requests it samples and whether the
monitor tests the model's inputs or its predictions. ``offer`` runs on every request, so
it only draws, appends raw bytes to a bounded queue and returns: parsing happens in the
monitor. A background task sends each monitor's queue in batches at most every
``FLUSH_INTERVAL_S``, one send in flight per monitor, so a slow or missing monitor holds
nobody: its queue fills and further rows are dropped and counted, and the count travels
with the next batch that does get through.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

FLUSH_INTERVAL_S = 0.2
MAX_BATCH = 512
MAX_QUEUED = 4096
# A monitor actor that is restarting can leave a call waiting for a long time; past this
# the batch counts as dropped and the queue moves on.
SEND_TIMEOUT_S = 30.0

# (arm key, request body, prediction payload when the monitor tests predictions)
TapItem = tuple[str, bytes, "bytes | None"]
Send = Callable[[str, list[TapItem], int], Awaitable[None]]


class _Tap:
    """One monitor's queue and counters; the counters live as long as the tap is configured."""

    __slots__ = ("dropped", "in_flight", "monitor", "predictions", "queue", "sample", "sampled", "sent",
                 "unreported")

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.sample = 1.0
        self.predictions = False
        self.queue: deque[TapItem] = deque()
        self.in_flight = False
        self.sampled = 0
        self.sent = 0
        self.dropped = 0
        self.unreported = 0  # dropped since the last send that reached the monitor

    def drop(self, count: int) -> None:
        self.dropped += count
        self.unreported += count


class DriftTaps:
    """The taps of one ingress replica; see the module docstring."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self._taps: list[_Tap] = []
        self.task: asyncio.Task[None] | None = None

    def configure(self, taps: list[dict[str, Any]]) -> None:
        """Apply the taps of a new user_config; monitors still configured keep their queues."""
        current = {tap.monitor: tap for tap in self._taps}
        configured = []
        for entry in taps:
            tap = current.get(entry["monitor"]) or _Tap(entry["monitor"])
            tap.sample = float(entry.get("sample", 1.0))
            tap.predictions = entry.get("target") == "predictions"
            configured.append(tap)
        self._taps = configured

    @property
    def active(self) -> bool:
        return bool(self._taps)

    def offer(self, arm_key: str, body: bytes, payload: bytes) -> None:
        """Sample one answered request for every tap; never waits."""
        for tap in self._taps:
            if tap.sample < 1.0 and random.random() >= tap.sample:
                continue
            tap.sampled += 1
            if len(tap.queue) >= MAX_QUEUED:
                tap.drop(1)
                continue
            tap.queue.append((arm_key, body, payload if tap.predictions else None))
        task = self.task
        if task is None or task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    def counters(self) -> dict[str, dict[str, int]]:
        return {tap.monitor: {"sampled": tap.sampled, "sent": tap.sent, "dropped": tap.dropped,
                              "queued": len(tap.queue)} for tap in self._taps}

    async def _drain(self) -> None:
        sends: set[asyncio.Task[None]] = set()
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            for tap in self._taps:
                if tap.queue and not tap.in_flight:
                    tap.in_flight = True
                    send = asyncio.get_running_loop().create_task(self._send(tap))
                    sends.add(send)
                    send.add_done_callback(sends.discard)
            # A drop count not yet reported rides with the monitor's next batch and is never
            # sent alone: a missing monitor costs no calls once its rows stop coming.
            if not sends and not any(tap.queue for tap in self._taps):
                return

    async def _send(self, tap: _Tap) -> None:
        queue = tap.queue
        batch = [queue.popleft() for _ in range(min(MAX_BATCH, len(queue)))]
        reported, tap.unreported = tap.unreported, 0
        try:
            await asyncio.wait_for(self.send(tap.monitor, batch, reported), SEND_TIMEOUT_S)
        except Exception:  # the monitor is gone, restarting or failed: the batch is lost, and said so later
            tap.unreported += reported
            tap.drop(len(batch))
        else:
            tap.sent += len(batch)
        finally:
            tap.in_flight = False
