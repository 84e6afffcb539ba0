#!/usr/bin/env bash
# Set everything up and run every check: lint, layer contracts, schema freshness,
# unit tests, then integration tests against a real local Ray and MLflow.
# Extra arguments go to both pytest runs (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-env
bin=.venv/bin
echo "== lint";            "$bin/ruff" check .
echo "== import layers";   "$bin/lint-imports" | tail -n 1
echo "== schema";          "$bin/mlopsfile" schema --check
echo "== unit tests";      "$bin/python" -m pytest tests/unit -q -p no:cacheprovider "$@"
echo "== integration tests (real Ray, MLflow)"
"$bin/python" -m pytest tests/integration -q -p no:cacheprovider "$@"
