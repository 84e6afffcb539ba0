"""Traffic routing and per-arm counters for the Serve ingress. Pure: no Ray, no I/O.

The control plane hands the ingress a traffic table in ``user_config``:

    {"generation": 3, "mode": "split" | "ab" | "shadow", "sticky_header": "x-user-id",
     "shadow_sample": 0.1,
     "arms": [{"role": "stable", "version": "3", "app": null, "weight": 80},
              {"role": "candidate", "version": "4", "app": "iris.candidate", "weight": 20}]}

An arm with ``app: null`` is scored inside the ingress itself (no extra hop); others are
forwarded to the named Serve application. In ``shadow`` mode every caller gets the stable
answer and a share of requests is mirrored to the candidate afterwards.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

# Upper bounds in milliseconds; the last bucket is everything slower.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
HASH_SPACE = 10_000


@dataclass
class ArmStats:
    """Cumulative counters of one arm (one model version) as seen by the ingress."""

    requests: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    # Shadow comparisons: rows compared and agreeing, and the summed absolute difference of numeric rows.
    shadow_requests: int = 0
    shadow_errors: int = 0
    shadow_dropped: int = 0
    compared_rows: int = 0
    agreed_rows: int = 0
    numeric_rows: int = 0
    abs_diff_sum: float = 0.0

    def record(self, latency_ms: float, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        self.latency_sum_ms += latency_ms
        self.buckets[bucket_index(latency_ms)] += 1

    def record_comparison(self, comparison: Comparison) -> None:
        self.compared_rows += comparison.rows
        self.agreed_rows += comparison.agreed
        self.numeric_rows += comparison.numeric_rows
        self.abs_diff_sum += comparison.abs_diff_sum

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, buckets=list(self.buckets))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmStats:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        stats = cls(**known)
        if len(stats.buckets) != len(LATENCY_BUCKETS_MS) + 1:
            stats.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        return stats

    def plus(self, other: ArmStats) -> ArmStats:
        return self._combine(other, 1)

    def minus(self, other: ArmStats) -> ArmStats:
        """Counters since ``other`` was taken (a window's baseline)."""
        return self._combine(other, -1)

    def _combine(self, other: ArmStats, sign: int) -> ArmStats:
        values = {name: getattr(self, name) + sign * getattr(other, name)
                  for name in self.__dataclass_fields__ if name != "buckets"}
        return ArmStats(**values, buckets=[a + sign * b for a, b in zip(self.buckets, other.buckets, strict=True)])

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def latency_quantile_ms(self, quantile: float) -> float | None:
        return quantile_ms(self.buckets, quantile)

    @property
    def agreement(self) -> float | None:
        return self.agreed_rows / self.compared_rows if self.compared_rows else None

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.numeric_rows if self.numeric_rows else None


def bucket_index(latency_ms: float) -> int:
    for index, bound in enumerate(LATENCY_BUCKETS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BUCKETS_MS)


def quantile_ms(buckets: list[int], quantile: float) -> float | None:
    """The upper bound of the bucket holding the quantile (as Prometheus' histogram_quantile
    would without interpolation): an honest over-estimate, never an under-estimate."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return float(LATENCY_BUCKETS_MS[index]) if index < len(LATENCY_BUCKETS_MS) else math.inf
    return math.inf


def merge_snapshots(snapshots: list[dict[str, dict[str, Any]]]) -> dict[str, ArmStats]:
    """Sum per-replica snapshots ({version: counters}) into one ArmStats per version."""
    merged: dict[str, ArmStats] = {}
    for snapshot in snapshots:
        for version, counters in snapshot.items():
            stats = ArmStats.from_dict(counters)
            merged[version] = merged[version].plus(stats) if version in merged else stats
    return merged


@dataclass(frozen=True)
class Arm:
    role: str
    version: str
    app: str | None
    weight: float

    @property
    def local(self) -> bool:
        return self.app is None

    @property
    def key(self) -> str:
        return arm_key(self.role, self.version)


def arm_key(role: str, version: str) -> str:
    """Counters are kept per role and version: an A/B test may pit two models with one version number."""
    return f"{role}/{version}"


class TrafficTable:
    """Chooses the arm for each request from the weights in the traffic config."""

    def __init__(self, config: dict[str, Any] | None, local_version: str) -> None:
        config = config or {}
        arms = [Arm(a["role"], str(a["version"]), a.get("app"), float(a.get("weight", 0)))
                for a in config.get("arms") or []]
        if not arms:
            arms = [Arm("stable", local_version, None, 100.0)]
        self.arms = arms
        self.mode: str = config.get("mode") or "split"
        self.sticky_header: str | None = config.get("sticky_header")
        self.shadow_sample = float(config.get("shadow_sample") or 0.0)
        self.generation = int(config.get("generation") or 0)
        self.stable = next((a for a in arms if a.role == "stable"), arms[0])
        self.shadow = next((a for a in arms if a.role != "stable"), None) if self.mode == "shadow" else None
        weighted = [a for a in arms if a.weight > 0] if self.mode != "shadow" else [self.stable]
        self._weighted = weighted or [self.stable]
        total = sum(a.weight for a in self._weighted) or 1.0
        self._cumulative: list[tuple[float, Arm]] = []
        running = 0.0
        for arm in self._weighted:
            running += (arm.weight or (100.0 if len(self._weighted) == 1 else 0.0)) / total
            self._cumulative.append((running, arm))
        self.single: Arm | None = self._weighted[0] if len(self._weighted) == 1 else None

    def pick(self, key: str | None = None, draw: float | None = None) -> Arm:
        """The arm for one request: by a stable hash of ``key`` (sticky) or a random draw."""
        if self.single is not None:
            return self.single
        point = sticky_point(key) if key is not None else (random.random() if draw is None else draw)
        for bound, arm in self._cumulative:
            if point < bound:
                return arm
        return self._cumulative[-1][1]

    def mirror(self, draw: float | None = None) -> Arm | None:
        """The shadow arm when this request is sampled for mirroring."""
        if self.shadow is None or self.shadow_sample <= 0:
            return None
        return self.shadow if (random.random() if draw is None else draw) < self.shadow_sample else None


def sticky_point(key: str) -> float:
    """A point in [0, 1) fixed by the key: the same user always lands on the same arm."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") % HASH_SPACE) / HASH_SPACE


@dataclass(frozen=True)
class Comparison:
    rows: int
    agreed: int
    numeric_rows: int
    abs_diff_sum: float


def compare_predictions(stable_body: bytes, candidate_body: bytes, tolerance: float = 1e-9) -> Comparison:
    """Row-by-row agreement of two MLflow prediction responses ({"predictions": [...]})."""
    stable = _rows(stable_body)
    candidate = _rows(candidate_body)
    if len(stable) != len(candidate):
        return Comparison(rows=max(len(stable), len(candidate)), agreed=0, numeric_rows=0, abs_diff_sum=0.0)
    agreed = numeric = 0
    diff_sum = 0.0
    for left, right in zip(stable, candidate, strict=True):
        if _is_number(left) and _is_number(right):
            numeric += 1
            difference = abs(float(left) - float(right))
            diff_sum += difference
            agreed += difference <= tolerance * max(1.0, abs(float(left)))
        else:
            agreed += left == right
    return Comparison(rows=len(stable), agreed=agreed, numeric_rows=numeric, abs_diff_sum=diff_sum)


def _rows(body: bytes) -> list[Any]:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    predictions = decoded.get("predictions") if isinstance(decoded, dict) else decoded
    if isinstance(predictions, dict):  # column-oriented output: compare row tuples
        columns = list(predictions.values())
        return [tuple(values) for values in zip(*columns, strict=False)] if columns else []
    return list(predictions) if isinstance(predictions, list) else [predictions]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
