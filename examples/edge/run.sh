#!/usr/bin/env bash
# An edge image end to end: convert iris to ONNX (parity-checked), build an image on a private
# Docker engine, run it and ask it for a prediction; then a new version reaches the `canary`
# tag, is promoted to `stable` and rolled back. Everything it starts is stopped at the end.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
(cd "$root" && bash .ci/setup-env)
bin="$root/.venv/bin"
engine=$(mktemp -d /tmp/mlopsfile-edge-engine.XXXXXX)
container=""
cleanup() {
  [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1 || true
  bash "$root/.ci/docker-engine" stop "$engine" >/dev/null 2>&1 || true
  rm -rf "$engine"
}
trap cleanup EXIT
eval "$(bash "$root/.ci/docker-engine" start "$engine")"   # exports DOCKER_HOST
bash "$root/.ci/edge-base-image" >/dev/null
cd "$here"
"$bin/python" "$root/examples/quickstart/train.py" --project . --if-missing
"$bin/mlopsfile" apply --auto-approve
port=$("$bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
container=$(docker run -d --network host acme/iris-edge:stable --host 127.0.0.1 --port "$port")
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
echo "The container answers:"
curl -s "http://127.0.0.1:$port/predict" -H 'content-type: application/json' \
  -d '{"dataframe_records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}'
echo
"$bin/python" "$root/examples/quickstart/train.py" --project . --C 0.5   # a new version; @champion moves to it
"$bin/mlopsfile" apply --auto-approve      # builds it and moves `canary` only
"$bin/mlopsfile" promote iris-edge         # smoke run of the canary image, then `stable` moves
"$bin/mlopsfile" rollback iris-edge        # `stable` back to the previous image
"$bin/mlopsfile" status
ls -l dist/
