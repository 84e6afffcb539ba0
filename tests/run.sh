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
# Two lanes, each a pytest session with its own local Ray head and MLflow registry. Lane B
# (batch jobs, edge images on Docker, the Docker engine) runs beside lane A, which keeps
# the tests that put a steady load on Serve; lane A ends with the watch agent and the
# rollouts under load, by when lane B is done, so they measure Serve alone.
lanes=$(mktemp -d /tmp/mlopsfile-lanes.XXXXXX)
lane_b=(tests/integration/test_edge.py tests/integration/test_batch.py tests/integration/test_docker_engine.py)
lane_a=(tests/integration/test_monitors.py tests/integration/test_online_lifecycle.py tests/integration/test_safety.py
        tests/integration/test_cluster_and_registry.py tests/integration/test_watch.py tests/integration/test_rollouts.py)
listed=$(printf '%s\n' "${lane_a[@]}" "${lane_b[@]}" | sort)
present=$(ls tests/integration/test_*.py | sort)
if [ "$listed" != "$present" ]; then
  echo "tests/run.sh: every integration test file belongs to one lane; these differ:" >&2
  diff <(echo "$listed") <(echo "$present") >&2 || true
  exit 1
fi
"$bin/python" -m pytest "${lane_b[@]}" -q -p no:cacheprovider --durations=20 --basetemp "$lanes/b" "$@" \
  >"$lanes/b.log" 2>&1 &
lane_b_job=$!
status_a=0
"$bin/python" -m pytest "${lane_a[@]}" -q -p no:cacheprovider --durations=30 --basetemp "$lanes/a" "$@" || status_a=$?
status_b=0
wait "$lane_b_job" || status_b=$?
echo "== integration tests, lane B (batch, edge; ran beside lane A)"
cat "$lanes/b.log"
rm -rf --one-file-system "$lanes"
echo "integration: lane A exit $status_a, lane B exit $status_b"
[ "$status_a" -eq 0 ] && [ "$status_b" -eq 0 ]
