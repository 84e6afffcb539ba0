#!/usr/bin/env bash
# Set everything up and run every check: lint, layer contracts, schema freshness,
# unit tests, then integration tests against a real local Ray, MLflow and Docker engine.
# Extra arguments go to both pytest runs (e.g. -x, -k NAME).
# The integration tests share one Docker engine: the one named by MLOPSFILE_TEST_DOCKER_HOST,
# else a private engine started here (.ci/docker-engine, needs root; installs docker.io if
# missing) and stopped on exit. The edge base image is built into it first (.ci/edge-base-image,
# cached under ${MLOPSFILE_CACHE:-~/.cache/mlopsfile}).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup-env
# The engine and base image come up in the background while lint and unit tests run.
engine_log=$(mktemp)
if [ -z "${MLOPSFILE_TEST_DOCKER_HOST:-}" ]; then
  engine_dir=$(mktemp -d /tmp/mlopsfile-docker.XXXXXX)
  stop_engine() {
    if [ -n "${engine_job:-}" ] && kill -0 "$engine_job" 2>/dev/null; then kill "$engine_job"; wait "$engine_job" || true; fi
    if bash .ci/docker-engine stop "$engine_dir"; then rm -rf --one-file-system "$engine_dir"; fi
    rm -f "$engine_log"
  }
  trap stop_engine EXIT
  MLOPSFILE_TEST_DOCKER_HOST="unix://$engine_dir/docker.sock"
  export MLOPSFILE_TEST_DOCKER_HOST
  (bash .ci/docker-engine start "$engine_dir" >/dev/null && DOCKER_HOST=$MLOPSFILE_TEST_DOCKER_HOST bash .ci/edge-base-image) \
    >"$engine_log" 2>&1 &
else
  (DOCKER_HOST=$MLOPSFILE_TEST_DOCKER_HOST bash .ci/edge-base-image) >"$engine_log" 2>&1 &
fi
engine_job=$!
bin=.venv/bin
echo "== lint";            "$bin/ruff" check .
echo "== import layers";   "$bin/lint-imports" | tail -n 1
echo "== schema";          "$bin/mlopsfile" schema --check
echo "== unit tests";      "$bin/python" -m pytest tests/unit -q -p no:cacheprovider "$@"
echo "== docker engine and edge base image"
if ! wait "$engine_job"; then
  cat "$engine_log"
  echo "the Docker engine or the edge base image could not be set up" >&2
  exit 1
fi
echo "engine: $MLOPSFILE_TEST_DOCKER_HOST, base image: $(tail -n 1 "$engine_log")"
echo "== integration tests (real Ray, MLflow, Docker)"
"$bin/python" -m pytest tests/integration -q -p no:cacheprovider --durations=40 "$@"
