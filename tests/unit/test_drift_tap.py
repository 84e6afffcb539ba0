"""Drift taps: sampled, bounded, batched, never awaited by callers, drops counted and reported."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from runtime import drift_tap
from runtime.drift_tap import DriftTaps, TapItem

Call = tuple[str, list[TapItem], int]


class Monitors:
    """Stands in for the monitor actors: records every send; can block or fail."""

    def __init__(self, fail_first: int = 0, blocked: bool = False) -> None:
        self.calls: list[Call] = []
        self.fail_first = fail_first
        self.gate = asyncio.Event() if blocked else None

    async def send(self, monitor: str, batch: list[TapItem], dropped: int) -> None:
        self.calls.append((monitor, list(batch), dropped))
        if self.gate is not None:
            await self.gate.wait()
        if len(self.calls) <= self.fail_first:
            raise RuntimeError("monitor actor gone")

    def items(self, monitor: str) -> list[TapItem]:
        return [item for name, batch, _ in self.calls if name == monitor for item in batch]

    def reported_drops(self, monitor: str) -> int:
        return sum(dropped for name, _, dropped in self.calls if name == monitor)


@pytest.fixture(autouse=True)
def fast_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "FLUSH_INTERVAL_S", 0.005)


def tap(monitor: str, sample: float = 1.0, target: str = "inputs") -> dict[str, object]:
    return {"monitor": monitor, "sample": sample, "target": target}


def taps_of(monitors: Monitors, *configured: dict[str, object]) -> DriftTaps:
    taps = DriftTaps(monitors.send)
    taps.configure(list(configured) or [tap("m")])
    return taps


async def drained(taps: DriftTaps) -> None:
    assert taps.task is not None
    await asyncio.wait_for(taps.task, 10)


def test_each_tap_samples_its_share_and_everything_sampled_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "MAX_QUEUED", 100_000)
    random.seed(7)
    monitors = Monitors()
    offers, share = 20_000, 0.3

    async def scenario() -> None:
        taps = taps_of(monitors, tap("some", share), tap("all"))
        for i in range(offers):
            taps.offer("stable/1", b"%d" % i, b"{}")
        await drained(taps)
        counters = taps.counters()
        # Binomial(20,000, 0.3): 5 standard deviations either side.
        bound = 5 * math.sqrt(offers * share * (1 - share))
        assert abs(counters["some"]["sampled"] - offers * share) < bound
        assert counters["all"] == {"sampled": offers, "sent": offers, "dropped": 0, "queued": 0}
        assert counters["some"]["sent"] == counters["some"]["sampled"]

    asyncio.run(scenario())
    assert [item[1] for item in monitors.items("all")] == [b"%d" % i for i in range(offers)]  # in order
    assert all(len(batch) <= drift_tap.MAX_BATCH for _, batch, _ in monitors.calls)
    assert len(monitors.items("some")) < offers


def test_a_blocked_monitor_fills_a_bounded_queue_and_drops_are_counted_and_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "MAX_QUEUED", 5)
    monkeypatch.setattr(drift_tap, "MAX_BATCH", 2)
    monitors = Monitors(blocked=True)

    async def scenario() -> None:
        taps = taps_of(monitors)
        for _ in range(20):
            taps.offer("stable/1", b"x", b"{}")
        while not monitors.calls:  # the first batch leaves and hangs
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)
        assert len(monitors.calls) == 1  # one send in flight per monitor
        for _ in range(10):
            taps.offer("stable/1", b"y", b"{}")
        assert taps.counters()["m"] == {"sampled": 30, "sent": 0, "dropped": 23, "queued": 5}
        monitors.gate.set()
        await drained(taps)
        assert taps.counters()["m"] == {"sampled": 30, "sent": 7, "dropped": 23, "queued": 0}

    asyncio.run(scenario())
    assert [len(batch) for _, batch, _ in monitors.calls] == [2, 2, 2, 1]
    # The first batch carried the drops before it, the second those made while it hung.
    assert [dropped for _, _, dropped in monitors.calls] == [15, 8, 0, 0]


def test_a_failing_send_counts_its_rows_as_dropped_and_the_drain_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "MAX_BATCH", 3)
    monitors = Monitors(fail_first=1)

    async def scenario() -> None:
        taps = taps_of(monitors)
        for i in range(5):
            taps.offer("stable/1", b"%d" % i, b"{}")
        await drained(taps)
        assert taps.counters()["m"] == {"sampled": 5, "sent": 2, "dropped": 3, "queued": 0}
        taps.offer("stable/1", b"5", b"{}")
        await drained(taps)

    asyncio.run(scenario())
    # The batch after the failure tells the monitor what the failure lost.
    assert [(len(batch), dropped) for _, batch, dropped in monitors.calls] == [(3, 0), (2, 3), (1, 0)]
    assert [item[1] for item in monitors.items("m")[3:]] == [b"3", b"4", b"5"]


def test_a_send_that_never_returns_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "SEND_TIMEOUT_S", 0.05)
    monitors = Monitors(blocked=True)

    async def scenario() -> None:
        taps = taps_of(monitors)
        taps.offer("stable/1", b"1", b"{}")
        await drained(taps)
        assert taps.counters()["m"] == {"sampled": 1, "sent": 0, "dropped": 1, "queued": 0}

    asyncio.run(scenario())


def test_offer_never_waits_even_when_the_monitor_never_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift_tap, "MAX_QUEUED", 100)
    monitors = Monitors(blocked=True)  # never released

    async def scenario() -> None:
        taps = taps_of(monitors, tap("m", target="predictions"))
        for round_ in range(5):
            # offer is plain (not awaitable): with the monitor blocked for good, any wait in it
            # would hang this loop rather than slow it.
            for _ in range(10_000):
                assert taps.offer("stable/1", b"x", b"{}") is None
            for _ in range(500):  # the drain runs in between, and hangs on its first send
                await asyncio.sleep(0.01)
                if monitors.calls:
                    break
            assert len(monitors.calls) == 1, round_
        counters = taps.counters()["m"]
        assert counters["sampled"] == 50_000 and counters["sent"] == 0
        assert counters["dropped"] + counters["queued"] + len(monitors.calls[0][1]) == 50_000

    asyncio.run(scenario())


def test_predictions_travel_only_to_monitors_that_test_them() -> None:
    monitors = Monitors()

    async def scenario() -> None:
        taps = taps_of(monitors, tap("inputs"), tap("outputs", target="predictions"))
        taps.offer("candidate/4", b"request", b'{"predictions": [1]}')
        await drained(taps)

    asyncio.run(scenario())
    assert monitors.items("inputs") == [("candidate/4", b"request", None)]
    assert monitors.items("outputs") == [("candidate/4", b"request", b'{"predictions": [1]}')]


def test_reconfigure_keeps_the_queues_of_monitors_still_tapped() -> None:
    monitors = Monitors()

    async def scenario() -> None:
        taps = DriftTaps(monitors.send)
        assert not taps.active
        taps.configure([tap("kept"), tap("removed")])
        assert taps.active
        taps.offer("stable/1", b"1", b"p1")
        # Before the first flush: queued rows of a monitor still tapped survive the reconfigure.
        taps.configure([tap("kept", target="predictions"), tap("added")])
        assert taps.counters() == {"kept": {"sampled": 1, "sent": 0, "dropped": 0, "queued": 1},
                                   "added": {"sampled": 0, "sent": 0, "dropped": 0, "queued": 0}}
        taps.offer("stable/1", b"2", b"p2")
        await drained(taps)
        taps.configure([])
        assert not taps.active and taps.counters() == {}
        taps.offer("stable/1", b"3", b"p3")  # nothing tapped: nothing queued, nothing sent

    asyncio.run(scenario())
    assert monitors.items("kept") == [("stable/1", b"1", None), ("stable/1", b"2", b"p2")]
    assert monitors.items("added") == [("stable/1", b"2", None)]
    assert monitors.items("removed") == []
