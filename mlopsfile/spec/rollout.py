"""How a new model version reaches callers: ``spec.rollout`` of a Deployment."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from mlopsfile.spec.common import ResourceName, Strict, check_route

DURATION_RE = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")
HEADER_RE = re.compile(r"^[A-Za-z0-9-]+$")


def duration_seconds(value: float | int | str) -> float:
    """'90s', '5m', '1h30m' or a number of seconds."""
    if isinstance(value, bool) or (isinstance(value, (int, float)) and not math.isfinite(value)):
        raise ValueError(f"invalid duration {value!r}: use seconds or a span like '30s', '5m', '1h30m'")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    match = DURATION_RE.match(text)
    if not text or not match or not any(match.groupdict().values()):
        raise ValueError(f"invalid duration {value!r}: use seconds or a span like '30s', '5m', '1h30m'")
    return sum(float(match[unit] or 0) * factor for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))


Duration = Annotated[float | int | str, Field(description="Seconds, or a span like '30s', '5m', '1h30m'.")]


def _check_duration(value: float | int | str | None) -> float | int | str | None:
    if value is not None and duration_seconds(value) < 0:
        raise ValueError("a duration cannot be negative")
    return value


class Analysis(Strict):
    """Gates checked on the candidate's own traffic while a step pauses; one failing gate aborts."""

    max_error_rate: float = Field(
        default=0.01, ge=0, le=1,
        description="Highest share of the candidate's requests answered with a 5xx (0.01 = 1%).",
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, description="Highest 99th-percentile latency of the candidate, in milliseconds.",
    )
    min_agreement: float | None = Field(
        default=None, ge=0, le=1,
        description=(
            "Batch targets: lowest share of sampled rows on which the new version predicts what the published "
            "one did (0.95 = 95%)."
        ),
    )
    max_mean_shift: float | None = Field(
        default=None, ge=0,
        description=(
            "Batch targets, numeric predictions: largest move of the mean prediction on the sample, in standard "
            "deviations of the published version's predictions."
        ),
    )
    drift: str | None = Field(
        default=None,
        description=(
            "Online canaries: name of a Monitor of this deployment; its detector also tests the candidate's "
            "traffic, and a drift verdict aborts the rollout like any failed gate."
        ),
    )
    min_requests: int = Field(
        default=20, ge=1,
        description=(
            "Requests the candidate must have answered in a step before its gates count: fewer and the "
            "step waits (past its pause) instead of judging on noise."
        ),
    )


class CanaryStep(Strict):
    """Send ``weight`` percent of requests to the candidate, then pause while the gates are checked."""

    weight: float = Field(gt=0, le=100, description="Percent of requests sent to the candidate in this step.")
    pause: Duration | None = Field(
        default=None,
        description="How long to hold this weight while gates are checked; unset holds until `mlopsfile promote`.",
    )

    _pause = field_validator("pause")(_check_duration)


class DirectRollout(Strict):
    """Replace at once: new replicas become healthy before the old ones stop."""

    strategy: Literal["direct"] = Field(default="direct", description="'direct': replace at once.")


class CanaryRollout(Strict):
    """Shift traffic to the new version in steps, checking gates at each; promote or abort on evidence."""

    strategy: Literal["canary"] = Field(description="'canary': weighted steps with analysis gates.")
    steps: list[CanaryStep] | None = Field(
        default=None, min_length=1,
        description="Online targets (required there): weights in increasing order, each with a pause.",
    )
    sample: float | None = Field(
        default=None, gt=0, le=1,
        description=(
            "Batch targets: share of input rows the new version scores beside the published version before the "
            "full run, which starts only if the analysis gates pass (default 0.05)."
        ),
    )
    analysis: Analysis = Field(default_factory=Analysis, description="Gates checked during each pause.")
    keep_previous: Duration = Field(
        default="5m", description="How long the previous version stays loaded after promotion, for instant rollback.",
    )

    _keep = field_validator("keep_previous")(_check_duration)

    @model_validator(mode="after")
    def _increasing(self) -> CanaryRollout:
        weights = [step.weight for step in self.steps or []]
        if weights != sorted(weights) or len(set(weights)) != len(weights):
            raise ValueError(f"steps must have strictly increasing weights, got {weights}")
        return self


class Smoke(Strict):
    """Requests sent to the preview route before the switch."""

    requests: int = Field(default=20, ge=1, le=10000, description="How many smoke requests to send.")
    body: dict[str, object] | None = Field(
        default=None,
        description="Scoring request to send (MLflow format); default: the model's logged input example.",
    )


class BlueGreenRollout(Strict):
    """Bring the new version up behind a preview route, check it, then switch all traffic at once."""

    strategy: Literal["blue-green"] = Field(description="'blue-green': preview, check, switch.")
    preview_route: str | None = Field(
        default=None, description="Route of the candidate before the switch (default '<route>/preview').",
    )
    smoke: Smoke = Field(default_factory=Smoke, description="Smoke requests sent to the preview route.")
    analysis: Analysis = Field(default_factory=Analysis, description="Gates applied to the smoke requests.")
    pause: Duration | None = Field(
        default=0, description="Wait this long on the preview after the checks pass; unset waits for `promote`.",
    )
    keep_previous: Duration = Field(
        default="5m", description="How long the previous version stays loaded after the switch, for instant rollback.",
    )

    _durations = field_validator("pause", "keep_previous")(_check_duration)

    _valid_route = field_validator("preview_route")(check_route)


class ABRollout(Strict):
    """A fixed split between the stable model and a candidate Model, sticky per caller."""

    strategy: Literal["ab"] = Field(description="'ab': fixed split with sticky assignment.")
    candidate: ResourceName = Field(description="Name of the Model document served in arm B.")
    weight: float = Field(default=50, gt=0, lt=100, description="Percent of callers assigned to the candidate.")
    sticky_header: str = Field(
        default="x-user-id",
        description="Request header whose value assigns a caller to an arm (hashed; no header: random).",
    )
    duration: Duration | None = Field(
        default=None, description="How long the test runs before traffic returns to stable; unset runs until ended by hand.",
    )

    _duration = field_validator("duration")(_check_duration)

    @field_validator("sticky_header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not HEADER_RE.match(value):
            raise ValueError(f"invalid header name {value!r}")
        return value.lower()


class ShadowRollout(Strict):
    """Mirror a share of requests to a candidate Model and compare; callers always get the stable answer."""

    strategy: Literal["shadow"] = Field(description="'shadow': mirror and compare, never affecting callers.")
    candidate: ResourceName = Field(description="Name of the Model document that receives mirrored requests.")
    sample: float = Field(default=0.1, gt=0, le=1, description="Share of requests mirrored to the candidate.")
    duration: Duration | None = Field(
        default=None, description="How long mirroring runs; unset runs until ended by hand or the spec changes.",
    )

    _duration = field_validator("duration")(_check_duration)


Rollout = Annotated[
    DirectRollout | CanaryRollout | BlueGreenRollout | ABRollout | ShadowRollout,
    Field(discriminator="strategy"),
]
STRATEGIES = ("direct", "canary", "blue-green", "ab", "shadow")
