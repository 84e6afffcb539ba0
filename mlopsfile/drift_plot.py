"""A PNG of a monitor's drift score over time, drifted windows marked.

The score of a window is −log10 of its p-value: 0 for a window like the reference,
rising with the evidence of drift; the dashed line is the test's level (−log10 p_val).
Online detectors have no p-value: their statistic is plotted instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from mlopsfile.errors import MlopsfileError

if TYPE_CHECKING:
    from mlopsfile.api_monitors import DriftHistory


def _score(p_value: float | None) -> float:
    return -math.log10(max(p_value or 0.0, 1e-300))


def write_plot(history: DriftHistory, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: the file is the output
    import matplotlib.pyplot as plt

    if not history.verdicts:
        raise MlopsfileError(f"monitor/{history.name} has no windows to plot yet")
    figure, axes = plt.subplots(figsize=(9, 4), dpi=100)
    arms = sorted({v.arm for v in history.verdicts})
    for arm in arms:
        windows = [v for v in history.verdicts if v.arm == arm]
        scored = [v for v in windows if v.p_value is not None]
        if scored:
            axes.plot([v.at for v in scored], [_score(v.p_value) for v in scored], marker="o", markersize=3,
                      label=f"score, {arm}")
            drifted = [v for v in scored if v.is_drift]
            axes.scatter([v.at for v in drifted], [_score(v.p_value) for v in drifted], color="red",
                         zorder=3, label=f"drift, {arm}" if drifted else None)
        else:  # online detectors have a statistic and a threshold, not a p-value
            axes.plot([v.at for v in windows], [v.statistic or 0.0 for v in windows], marker="o", markersize=3,
                      label=f"statistic, {arm}")
    threshold = next((v.detail.get("threshold") for v in history.verdicts if v.p_value is not None), None)
    if threshold is not None:
        axes.axhline(_score(float(threshold)), color="grey", linestyle="--", label=f"p_val {float(threshold):g}")
    if any(v.p_value is not None for v in history.verdicts):
        axes.set_ylabel("drift score (−log10 p-value)")
    axes.set_title(f"monitor/{history.name} on deployment/{history.deployment}")
    axes.legend(loc="best", fontsize="small")
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise MlopsfileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(figure)
