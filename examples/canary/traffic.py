"""A steady client of the iris deployment: counts answers per model version and failures."""

from __future__ import annotations

import sys
import time
from collections import Counter

import httpx

from mlopsfile.api import Project

ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def main(seconds: float) -> int:
    url = {row.name: row for row in Project.open().status()}["iris"].url
    assert url, "the iris deployment is not live"
    versions: Counter[str] = Counter()
    failures = 0
    deadline = time.monotonic() + seconds
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            try:
                response = client.post(url, json={"dataframe_records": [ROW]})
                versions[response.headers.get("x-model-version", "?")] += 1
                failures += response.status_code != 200
            except httpx.HTTPError:
                failures += 1
            time.sleep(0.02)
    answered = ", ".join(f"version {v}: {n}" for v, n in sorted(versions.items()))
    print(f"client: {sum(versions.values())} requests in {seconds:.0f}s ({answered}); {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 60))
