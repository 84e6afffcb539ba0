"""Two models on the same rows, for batch rollouts: a canary's sample and a shadow's side output.

A canary scores a sample of the input with the published version and the new one before
the full run, which starts only if the gates pass. A shadow scores every row with a
candidate as well, written beside the published output (``<output>/shadow/current``)
with its agreement. Agreement is counted per row on the primary prediction: equal labels,
or numbers equal within a relative tolerance; for numeric predictions the mean shift is
measured in standard deviations of the reference predictions.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

from runtime.batch_parts import write_part
from runtime.batch_slices import score_in_slices
from runtime.model_loading import load_pyfunc

CANDIDATE_COLUMN = "__mlopsfile_candidate"
REFERENCE_COLUMN = "__mlopsfile_reference"
TOLERANCE = 1e-9


def primary(predictions: Any) -> Any:
    """The first (or only) prediction column as a 1-D numpy array."""
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return predictions.iloc[:, 0].to_numpy()
    values = np.asarray(predictions.to_numpy() if isinstance(predictions, pd.Series) else predictions)
    return values[:, 0] if values.ndim > 1 else values


@dataclass
class Agreement:
    """Running comparison of reference and candidate predictions, batch by batch."""

    rows: int = 0
    agreed: int = 0
    numeric: bool = True
    reference_sum: float = 0.0
    reference_squares: float = 0.0
    candidate_sum: float = 0.0
    abs_diff_sum: float = 0.0

    def add(self, reference: Any, candidate: Any) -> None:
        import numpy as np

        reference, candidate = np.asarray(reference), np.asarray(candidate)
        self.rows += len(reference)
        numeric = np.issubdtype(reference.dtype, np.number) and np.issubdtype(candidate.dtype, np.number)
        if not numeric:
            self.numeric = False
            self.agreed += int(np.sum(reference.astype(str) == candidate.astype(str)))
            return
        left, right = reference.astype(float), candidate.astype(float)
        difference = np.abs(left - right)
        self.agreed += int(np.sum(difference <= TOLERANCE * np.maximum(1.0, np.abs(left))))
        self.reference_sum += float(left.sum())
        self.reference_squares += float((left * left).sum())
        self.candidate_sum += float(right.sum())
        self.abs_diff_sum += float(difference.sum())

    @property
    def agreement(self) -> float:
        return self.agreed / self.rows if self.rows else 1.0

    @property
    def mean_shift_sd(self) -> float | None:
        """|mean(candidate) - mean(reference)| in standard deviations of the reference."""
        if not self.numeric or not self.rows:
            return None
        mean = self.reference_sum / self.rows
        variance = max(self.reference_squares / self.rows - mean * mean, 0.0)
        shift = abs(self.candidate_sum / self.rows - mean)
        return shift / math.sqrt(variance) if variance > 0 else (0.0 if shift == 0 else math.inf)

    def report(self) -> dict[str, Any]:
        numbers = asdict(self)
        return {"rows": self.rows, "agreement": self.agreement, "mean_shift_sd": self.mean_shift_sd,
                "mean_abs_diff": numbers["abs_diff_sum"] / self.rows if self.numeric and self.rows else None}

    def failed_gates(self, min_agreement: float | None, max_mean_shift: float | None) -> list[str]:
        failures = []
        if min_agreement is not None and self.agreement < min_agreement:
            failures.append(f"agreement {self.agreement:.4f} < {min_agreement:g}")
        shift = self.mean_shift_sd
        if max_mean_shift is not None and shift is not None and shift > max_mean_shift:
            failures.append(f"mean shift {shift:.3f} sd > {max_mean_shift:g}")
        return failures


class PairScorer:
    """A model replica holding two models: the batch's columns, the first model's prediction
    and the second's (for a shadow, written as parts into ``staging``), or only the two predictions
    (for a canary's sample, returned)."""

    def __init__(self, first_uri: str, second_uri: str, env: dict[str, str], features: list[str],
                 keep: list[str], prediction_column: str | None, batch_size: int, staging: str | None) -> None:
        os.environ.update(env)
        self.first = load_pyfunc(first_uri)
        self.second = load_pyfunc(second_uri)
        self.features = features
        self.keep = keep
        self.prediction_column = prediction_column
        self.batch_size = batch_size
        self.staging = staging

    def __call__(self, block: Any) -> Any:
        scored = score_in_slices(block, self.batch_size, self._score)
        return scored if self.staging is None else write_part(scored, self.staging)

    def _score(self, batch: Any) -> Any:
        import pandas as pd

        rows = batch[self.features] if self.features else batch
        out = batch[self.keep].reset_index(drop=True) if self.keep else pd.DataFrame(index=range(len(batch)))
        out[self.prediction_column or REFERENCE_COLUMN] = primary(self.first.predict(rows))
        out[CANDIDATE_COLUMN] = primary(self.second.predict(rows))
        return out
