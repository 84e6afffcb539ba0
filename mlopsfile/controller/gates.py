"""Analysis gates: the candidate's counters in a window against the bounds in the spec. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlopsfile.resources import RolloutSettings
from runtime.traffic import ArmStats


@dataclass(frozen=True)
class Gate:
    name: str
    value: float | None
    bound: float
    ok: bool
    text: str


# Gates that say "not enough data yet" (the step waits) rather than "bad" (the rollout aborts).
WAITING_GATES = ("min_requests", "drift_windows")


@dataclass(frozen=True)
class DriftWindows:
    """The candidate's windows a drift monitor tested since the rollout started."""

    monitor: str
    windows: int
    drifted: int
    lowest_p_value: float | None = None
    readable: bool = True


@dataclass(frozen=True)
class GateReport:
    gates: tuple[Gate, ...]
    requests: int
    enough: bool  # at least min_requests (and a drift window, with a drift gate): the other gates count

    @property
    def failed(self) -> list[Gate]:
        # A drifted window aborts at once: more requests would not make the candidate's inputs less drifted.
        return [g for g in self.gates if not g.ok and g.name not in WAITING_GATES and (self.enough or g.name == "drift")]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(g) for g in self.gates]

    def summary(self) -> str:
        return "; ".join(g.text for g in self.gates)


def evaluate(window: ArmStats, settings: RolloutSettings, drift: DriftWindows | None = None) -> GateReport:
    requests = window.requests
    enough = requests >= settings.min_requests
    gates = [Gate("min_requests", float(requests), float(settings.min_requests), enough,
                  f"requests {requests} {'≥' if enough else '<'} {settings.min_requests}")]
    error_rate = window.error_rate
    ok = error_rate is None or error_rate <= settings.max_error_rate
    gates.append(Gate("error_rate", error_rate, settings.max_error_rate, ok,
                      f"error rate {_percent(error_rate)} {'≤' if ok else '>'} {_percent(settings.max_error_rate)}"))
    if settings.max_p99_ms is not None:
        p99 = window.latency_quantile_ms(0.99)
        ok = p99 is None or p99 <= settings.max_p99_ms
        gates.append(Gate("p99_ms", p99, settings.max_p99_ms, ok,
                          f"p99 {'-' if p99 is None else f'{p99:g} ms'} {'≤' if ok else '>'} {settings.max_p99_ms:g} ms"))
    if settings.drift_monitor is not None:
        gates.extend(_drift_gates(settings.drift_monitor, drift))
        enough = enough and gates[-2].ok
    return GateReport(tuple(gates), requests, enough)


def _drift_gates(monitor: str, drift: DriftWindows | None) -> list[Gate]:
    if drift is None or not drift.readable:
        return [Gate("drift_windows", None, 1.0, False, f"monitor/{monitor} unreadable; waiting"),
                Gate("drift", None, 0.0, True, "drift: not known yet")]
    tested = drift.windows >= 1
    ok = drift.drifted == 0
    lowest = f", lowest p-value {drift.lowest_p_value:.3g}" if drift.lowest_p_value is not None else ""
    return [Gate("drift_windows", float(drift.windows), 1.0, tested,
                 f"drift windows {drift.windows} {'≥' if tested else '<'} 1"),
            Gate("drift", float(drift.drifted), 0.0, ok,
                 f"monitor/{monitor}: {drift.drifted} of {drift.windows} candidate windows drifted{lowest}")]


def smoke_window(results: list[tuple[int, float, str]]) -> ArmStats:
    """Counters of a smoke run, so smoke requests are judged by the same gates."""
    stats = ArmStats()
    for status, milliseconds, _ in results:
        stats.record(milliseconds, 200 <= status < 400)
    return stats


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"
