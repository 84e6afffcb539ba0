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
bin=.venv/bin
echo "== lint";            "$bin/ruff" check .
echo "== import layers";   "$bin/lint-imports" | tail -n 1
echo "== schema";          "$bin/mlopsfile" schema --check
echo "== unit tests";      "$bin/python" -m pytest tests/unit -q -p no:cacheprovider "$@"
echo "== docker engine and edge base image"
if [ -z "${MLOPSFILE_TEST_DOCKER_HOST:-}" ]; then
  engine_dir=$(mktemp -d /tmp/mlopsfile-docker.XXXXXX)
  stop_engine() {
    if bash .ci/docker-engine stop "$engine_dir"; then rm -rf --one-file-system "$engine_dir"; fi
  }
  trap stop_engine EXIT
  MLOPSFILE_TEST_DOCKER_HOST=$(bash .ci/docker-engine start "$engine_dir" | sed -n 's/^export DOCKER_HOST=//p')
  export MLOPSFILE_TEST_DOCKER_HOST
fi
base_image=$(DOCKER_HOST=$MLOPSFILE_TEST_DOCKER_HOST bash .ci/edge-base-image)
echo "engine: $MLOPSFILE_TEST_DOCKER_HOST, base image: $base_image"
echo "== integration tests (real Ray, MLflow, Docker)"
"$bin/python" -m pytest tests/integration -q -p no:cacheprovider "$@"
