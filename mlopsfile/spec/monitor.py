"""The Monitor kind: drift detection on a deployment's live inputs or predictions."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from mlopsfile.spec.common import API_VERSION, Metadata, ResourceName, Strict
from mlopsfile.spec.lifecycle import Lifecycle
from mlopsfile.spec.rollout import Duration, _check_duration

REFERENCE_RE = re.compile(r"^(runs:/[0-9a-zA-Z]+/.+|models:/[^/]+/.+|[^:]+|file://.+|s3://.+|gs://.+)$")


class Detector(Strict):
    """Which drift test runs on each window, and its parameters (alibi-detect's names)."""

    kind: Literal["ks", "chi2", "tabular", "cvm-online", "fet-online", "mmd", "lsdd"] = Field(
        description=(
            "ks: Kolmogorov-Smirnov per feature; chi2: chi-squared per categorical feature; tabular: ks for "
            "numeric and chi2 for categorical features; cvm-online / fet-online: streaming Cramér-von Mises / "
            "Fisher's exact test; mmd / lsdd: multivariate kernel tests (need the torch extra)."
        ),
    )
    p_val: float = Field(default=0.05, gt=0, lt=1, description="Significance level of the test.")
    correction: Literal["bonferroni", "fdr"] | None = Field(
        default=None, description="Multiple-testing correction of feature-wise tests (default: the detector's own).",
    )
    categorical: list[str] = Field(
        default_factory=list, description="chi2 and tabular: the features that are categorical.",
    )
    ert: float | None = Field(
        default=None, gt=0, description="Online detectors: expected run time between false alarms, in rows.",
    )
    window_sizes: list[int] | None = Field(
        default=None, min_length=1, description="Online detectors: sizes of the windows the statistic is computed on.",
    )
    n_permutations: int | None = Field(
        default=None, ge=10, description="mmd and lsdd: permutations behind the p-value.",
    )


class WindowSpec(Strict):
    """How many sampled rows (or how much time) one drift test looks at."""

    rows: int | None = Field(default=None, ge=10, le=1_000_000, description="Rows per window.")
    duration: Duration | None = Field(
        default=None, description="Or a time span: every row sampled in it (at least 10) is one window.",
    )

    _duration = field_validator("duration")(_check_duration)

    @model_validator(mode="after")
    def _one_of(self) -> WindowSpec:
        if (self.rows is None) == (self.duration is None):
            raise ValueError("set exactly one of rows or duration")
        return self


class AlertAction(Strict):
    """POST a JSON description of the drift to a webhook; retried with backoff, failures recorded."""

    type: Literal["alert"] = Field(description="'alert': call a webhook.")
    url: str = Field(pattern=r"^https?://", description="Webhook URL (http or https).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers, e.g. an authorization.")


class RollbackAction(Strict):
    """Return the monitored deployment to its previous revision (as `mlopsfile rollback`)."""

    type: Literal["rollback"] = Field(description="'rollback': the deployment's previous revision.")


class RunAction(Strict):
    """Run a batch deployment now (e.g. rescoring or retraining)."""

    type: Literal["run"] = Field(description="'run': start a batch deployment.")
    deployment: ResourceName = Field(description="Name of a batch Deployment in the same spec set.")


DriftAction = Annotated[Union[AlertAction, RollbackAction, RunAction], Field(discriminator="type")]


class MonitorSpec(Strict):
    """Drift detection attached to one deployment, and what happens on drift."""

    deployment: ResourceName = Field(description="Name of the Deployment whose traffic (or output) is tested.")
    reference: str = Field(
        min_length=1,
        description=(
            "Reference data the windows are compared with: a parquet or csv file (relative to the project root) "
            "or an MLflow artifact URI (runs:/RUN_ID/path)."
        ),
    )
    features: list[str] | None = Field(
        default=None, min_length=1, description="Columns tested (default: the model signature's inputs).",
    )
    target: Literal["inputs", "predictions"] = Field(
        default="inputs", description="Test the model's inputs, or its predictions.",
    )
    detector: Detector = Field(default_factory=lambda: Detector(kind="ks"), description="The drift test.")
    window: WindowSpec = Field(default_factory=lambda: WindowSpec(rows=500), description="Rows per test.")
    sample: float = Field(
        default=1.0, gt=0, le=1, description="Share of requests the router hands to the monitor (never waited on).",
    )
    on_drift: list[DriftAction] = Field(default_factory=list, description="Actions taken when a window drifts.")
    cooldown: Duration = Field(
        default="30m", description="Least time between two runs of the same action: a drifting stream is not a storm.",
    )

    _cooldown = field_validator("cooldown")(_check_duration)

    @field_validator("reference")
    @classmethod
    def _known_reference(cls, value: str) -> str:
        if not REFERENCE_RE.match(value):
            raise ValueError(f"unsupported reference {value!r}: a local path or runs:/RUN_ID/PATH")
        return value

    @model_validator(mode="after")
    def _categorical_are_features(self) -> MonitorSpec:
        if self.features is not None:
            unknown = sorted(set(self.detector.categorical) - set(self.features))
            if unknown:
                raise ValueError(f"detector.categorical names columns that are not features: {', '.join(unknown)}")
        return self


class MonitorDocument(Strict):
    """Watch a Deployment for drift."""

    apiVersion: Literal["mlopsfile/v1"] = Field(description=f"Spec language version; always '{API_VERSION}'.")
    kind: Literal["Monitor"] = Field(description="Document kind.")
    metadata: Metadata = Field(description="Name, labels and annotations.")
    spec: MonitorSpec = Field(description="Deployment, reference, detector, window and actions.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Guards on what apply may do: prevent_destroy.")
