"""What `status` shows for a deployment in (or after) a rollout. Pure: built from values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlopsfile.controller.rollouts import window_stats
from mlopsfile.resources import DesiredDeployment, ObservedDeployment
from mlopsfile.state.rollouts import RolloutRecord
from runtime.traffic import arm_key


@dataclass(frozen=True)
class ArmView:
    role: str
    version: str
    weight: float
    requests: int
    errors: int
    error_rate: float | None
    p50_ms: float | None
    p99_ms: float | None
    agreement: float | None = None
    mean_abs_diff: float | None = None
    shadow_requests: int = 0
    shadow_errors: int = 0
    shadow_dropped: int = 0


@dataclass(frozen=True)
class RolloutView:
    strategy: str
    state: str
    revision: int
    from_version: str | None
    to_version: str | None
    step: str | None
    next_step_in_s: float | None
    keep_until: str | None
    message: str | None
    gates: list[dict[str, Any]] = field(default_factory=list)
    arms: list[ArmView] = field(default_factory=list)
    active: bool = True
    started_at: str = ""
    ended_at: str | None = None


def rollout_view(record: RolloutRecord, live: ObservedDeployment | None, stats: dict[str, Any],
                 now: datetime) -> RolloutView:
    settings = DesiredDeployment.model_validate(record.desired).rollout
    step = next_in = None
    if record.state == "step" and settings.steps:
        step = f"{record.step + 1}/{len(settings.steps)} ({settings.steps[record.step][0]:g}%)"
        pause = settings.steps[record.step][1]
        if pause is not None and record.step_started_at is not None:
            next_in = max(0.0, pause - (now - record.step_started_at).total_seconds())
    elif record.state == "preview":
        step = "smoke checks" if record.step == 0 else "checked, waiting to switch"
        if record.step == 1 and settings.pause_s is not None and record.step_started_at is not None:
            next_in = max(0.0, settings.pause_s - (now - record.step_started_at).total_seconds())
    elif record.state == "running" and settings.duration_s is not None and record.step_started_at is not None:
        next_in = max(0.0, settings.duration_s - (now - record.step_started_at).total_seconds())
    arms = []
    if live is not None and live.traffic is not None:
        for arm in live.traffic.arms:
            key = arm_key(arm.role, arm.version)
            counters = window_stats(stats, record.baseline if record.active else {}, key)
            arms.append(ArmView(
                role=arm.role, version=arm.version, weight=arm.weight, requests=counters.requests,
                errors=counters.errors, error_rate=counters.error_rate, p50_ms=counters.latency_quantile_ms(0.5),
                p99_ms=counters.latency_quantile_ms(0.99), agreement=counters.agreement,
                mean_abs_diff=counters.mean_abs_diff, shadow_requests=counters.shadow_requests,
                shadow_errors=counters.shadow_errors, shadow_dropped=counters.shadow_dropped,
            ))
    return RolloutView(
        strategy=record.strategy, state=record.state, revision=record.revision, from_version=record.from_version,
        to_version=record.to_version, step=step, next_step_in_s=next_in,
        keep_until=record.keep_until.isoformat(timespec="seconds") if record.keep_until else None,
        message=record.message, gates=record.gates, arms=arms, active=record.active,
        started_at=record.started_at.isoformat(timespec="seconds"),
        ended_at=record.ended_at.isoformat(timespec="seconds") if record.ended_at else None,
    )
