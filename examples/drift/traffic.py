"""Write the monitor's reference (the iris training features), or send iris rows to the deployment.

    python traffic.py reference            # data/reference.parquet
    python traffic.py send ROWS SHIFT      # ROWS rows, petal_length shifted by SHIFT cm
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_iris

URL = "http://127.0.0.1:8002/iris/predict"


def features():
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    frame.columns = [c.replace(" (cm)", "").replace(" ", "_") for c in frame.columns]
    return frame


def main() -> None:
    if sys.argv[1] == "reference":
        Path("data").mkdir(exist_ok=True)
        features().to_parquet("data/reference.parquet")
        return
    rows, shift = int(sys.argv[2]), float(sys.argv[3])
    frame = features()
    sample = frame.iloc[np.random.default_rng(0).integers(0, len(frame), rows)].copy()
    sample["petal_length"] += shift
    records = sample.to_dict(orient="records")
    with httpx.Client(timeout=30) as client:
        for start in range(0, rows, 10):
            client.post(URL, json={"dataframe_records": records[start:start + 10]}).raise_for_status()
    print(f"sent {rows} rows (petal_length shifted by {shift:g} cm)")


if __name__ == "__main__":
    main()
