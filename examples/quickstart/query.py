"""Ask the served iris model for two predictions, the way any HTTP client would."""

from __future__ import annotations

import sys

import httpx
from sklearn.datasets import load_iris

from mlopsfile.api import Project

ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
]


def main() -> int:
    rows = {row.name: row for row in Project.open().status()}
    deployment = rows.get("iris")
    if deployment is None or not deployment.url:
        print("the iris deployment is not live; run: mlopsfile apply", file=sys.stderr)
        return 1
    response = httpx.post(deployment.url, json={"dataframe_records": ROWS}, timeout=30)
    response.raise_for_status()
    names = load_iris().target_names
    print(f"POST {deployment.url} (model version {response.headers.get('x-model-version')})")
    for row, label in zip(ROWS, response.json()["predictions"], strict=True):
        print(f"  {row} -> {label} ({names[label]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
