"""Steady background traffic that counts every failed request, to prove zero-downtime changes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx


class Traffic:
    """Sends requests from one thread until stopped (bounded by ``max_seconds``)."""

    def __init__(self, url: str, payload: dict, max_seconds: float = 300.0, interval_s: float = 0.02) -> None:
        self.url = url
        self.payload = payload
        self.max_seconds = max_seconds
        self.interval_s = interval_s
        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + len(self.failures)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post(self.url, json=self.payload)
                    self.statuses[response.status_code] += 1
                    self.versions[response.headers.get("x-model-version", "?")] += 1
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(self.interval_s)


@dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    status: int  # 599: no HTTP answer at all
    version: str
    latency_ms: float
    text: str = ""

    @property
    def sent(self) -> float:
        """time.monotonic() when the request went out."""
        return self.at - self.latency_ms / 1000


class PacedLoad:
    """Requests at a steady rate from several threads, each answer kept with its time.

    Bounded in time (``max_seconds``) and stopped by leaving the ``with`` block.
    """

    def __init__(self, url: str, payload: dict, rate: float = 60.0, threads: int = 16, max_seconds: float = 600.0,
                 headers: Callable[[int], dict[str, str]] | None = None) -> None:
        self.url = url
        self.payload = payload
        self.rate = rate
        self.threads = threads
        self.max_seconds = max_seconds
        self.headers = headers or (lambda _: {})
        self.answers: list[Answer] = []
        self.started = 0.0
        self.stopped = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> PacedLoad:
        self.started = time.monotonic()
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)
        self.stopped = time.monotonic()

    def _run(self, index: int) -> None:
        interval = self.threads / self.rate
        deadline = self.started + self.max_seconds
        next_at = self.started + index * interval / self.threads
        sent = 0
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
                begun = time.monotonic()
                try:
                    response = client.post(self.url, json=self.payload, headers=self.headers(index * 1_000_000 + sent))
                    answer = Answer(time.monotonic(), response.status_code, response.headers.get("x-model-version", "?"),
                                    (time.monotonic() - begun) * 1000, response.text[:200] if response.status_code != 200 else "")
                except httpx.HTTPError as exc:
                    answer = Answer(time.monotonic(), 599, "?", (time.monotonic() - begun) * 1000, f"{type(exc).__name__}: {exc}")
                sent += 1
                with self._lock:
                    self.answers.append(answer)

    @property
    def failures(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    @property
    def achieved_rate(self) -> float:
        span = (self.stopped or time.monotonic()) - self.started
        return len(self.answers) / span if span > 0 else 0.0

    def versions(self, since: float = 0.0) -> Counter[str]:
        return Counter(a.version for a in self.answers if a.at >= since)
