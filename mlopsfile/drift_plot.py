"""A PNG of a monitor's score over time: p-value per window on a log scale, drifted windows marked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlopsfile.errors import MlopsfileError

if TYPE_CHECKING:
    from mlopsfile.api_monitors import DriftHistory


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
            axes.plot([v.at for v in scored], [max(v.p_value or 0.0, 1e-12) for v in scored], marker="o",
                      markersize=3, label=f"p-value, {arm}")
            drifted = [v for v in scored if v.is_drift]
            axes.scatter([v.at for v in drifted], [max(v.p_value or 0.0, 1e-12) for v in drifted], color="red",
                         zorder=3, label=f"drift, {arm}" if drifted else None)
        else:  # online detectors have a statistic and a threshold, not a p-value
            axes.plot([v.at for v in windows], [v.statistic or 0.0 for v in windows], marker="o", markersize=3,
                      label=f"statistic, {arm}")
    threshold = next((v.detail.get("threshold") for v in history.verdicts if v.p_value is not None), None)
    if threshold is not None:
        axes.axhline(float(threshold), color="grey", linestyle="--", label=f"p_val {float(threshold):g}")
    if any(v.p_value is not None for v in history.verdicts):
        axes.set_yscale("log")
        axes.set_ylabel("p-value (lower: more drift)")
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
