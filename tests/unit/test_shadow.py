"""Shadow mirroring: batched, bounded, never awaited by callers, failures counted."""

from __future__ import annotations

import asyncio
import json

import pytest

from runtime import shadow
from runtime.shadow import ShadowMirror
from runtime.traffic import ArmStats

KEY = "candidate/2"


def answer(predictions: list[object], status: int = 200) -> tuple[int, bytes, dict[str, str]]:
    return status, json.dumps({"predictions": predictions}).encode(), {}


class Candidate:
    """Stands in for the handle call to the candidate application."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[bytes]] = []
        self.fail = fail

    async def send(self, app: str, bodies: list[bytes]) -> list[tuple[int, bytes, dict[str, str]]]:
        self.calls.append(bodies)
        if self.fail:
            raise RuntimeError("candidate gone")
        return [answer([int(body)]) if body != b"9" else answer([], 500) for body in bodies]


def run(mirror_offers: list[tuple[bytes, bytes]], candidate: Candidate,
        monkeypatch: pytest.MonkeyPatch) -> tuple[ArmStats, int]:
    monkeypatch.setattr(shadow, "FLUSH_INTERVAL_S", 0.01)
    stats = ArmStats()
    published = []

    async def scenario() -> None:
        mirror = ShadowMirror(candidate.send, lambda _: stats, lambda: published.append(1))
        for body, stable in mirror_offers:
            mirror.offer(KEY, "app.candidate", body, stable)  # returns at once: callers never wait
        assert mirror.task is not None
        await mirror.task

    asyncio.run(scenario())
    return stats, len(published)


def test_mirrored_requests_go_in_one_batch_and_are_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    candidate = Candidate()
    offers = [(b"1", json.dumps({"predictions": [1]}).encode()),
              (b"2", json.dumps({"predictions": [3]}).encode()),
              (b"9", json.dumps({"predictions": [9]}).encode())]
    stats, published = run(offers, candidate, monkeypatch)
    assert candidate.calls == [[b"1", b"2", b"9"]]  # one handle call for the three
    assert stats.shadow_requests == 3 and stats.shadow_errors == 1
    assert stats.compared_rows == 2 and stats.agreed_rows == 1
    assert stats.agreement == 0.5 and stats.mean_abs_diff == 0.5
    assert published == 1


def test_a_failed_batch_counts_every_request_as_a_shadow_error(monkeypatch: pytest.MonkeyPatch) -> None:
    stats, _ = run([(b"1", b"{}"), (b"2", b"{}")], Candidate(fail=True), monkeypatch)
    assert stats.shadow_requests == 2 and stats.shadow_errors == 2 and stats.compared_rows == 0


def test_batches_are_bounded_and_a_full_queue_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow, "MAX_BATCH", 4)
    monkeypatch.setattr(shadow, "MAX_QUEUED", 10)
    candidate = Candidate()
    stable = json.dumps({"predictions": [1]}).encode()
    stats, _ = run([(b"1", stable)] * 13, candidate, monkeypatch)
    assert [len(call) for call in candidate.calls] == [4, 4, 2]
    assert stats.shadow_dropped == 3 and stats.shadow_requests == 10 and stats.agreed_rows == 10
