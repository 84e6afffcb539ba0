"""Steady background traffic that counts every failed request, to prove zero-downtime changes."""

from __future__ import annotations

import threading
import time
from collections import Counter

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
