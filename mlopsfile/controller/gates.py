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


@dataclass(frozen=True)
class GateReport:
    gates: tuple[Gate, ...]
    requests: int
    enough: bool  # at least min_requests: the other gates count

    @property
    def failed(self) -> list[Gate]:
        return [g for g in self.gates if not g.ok and g.name != "min_requests"] if self.enough else []

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(g) for g in self.gates]

    def summary(self) -> str:
        return "; ".join(g.text for g in self.gates)


def evaluate(window: ArmStats, settings: RolloutSettings) -> GateReport:
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
    return GateReport(tuple(gates), requests, enough)


def smoke_window(results: list[tuple[int, float, str]]) -> ArmStats:
    """Counters of a smoke run, so smoke requests are judged by the same gates."""
    stats = ArmStats()
    for status, milliseconds, _ in results:
        stats.record(milliseconds, 200 <= status < 400)
    return stats


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"
