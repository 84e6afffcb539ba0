#!/usr/bin/env bash
# A drift monitor end to end: serve iris v1 then v2 with a monitor on its inputs, send traffic
# like the training data and then shifted traffic; the monitor sees the drift and
# `mlopsfile watch` rolls the deployment back to v1. Prints the history and plots it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
(cd "$root" && bash .ci/setup-env)
bin="$root/.venv/bin"
cd "$here"
"$bin/python" traffic.py reference
"$bin/python" "$root/examples/quickstart/train.py" --project . --if-missing
"$bin/mlopsfile" apply --auto-approve
"$bin/python" "$root/examples/quickstart/train.py" --project . --C 0.5   # v2 replaces v1
"$bin/mlopsfile" apply --auto-approve
"$bin/mlopsfile" watch --tick 1 &
watcher=$!
trap 'kill "$watcher" 2>/dev/null || true' EXIT
"$bin/python" traffic.py send 200 0     # like the training data: no drift
"$bin/python" traffic.py send 400 2.5   # petal_length 2.5 cm longer: drift, rollback, then cooldown
sleep 8
"$bin/mlopsfile" status
"$bin/mlopsfile" drift iris-drift --plot drift.png
echo
echo "Stop everything: (cd examples/drift && ../../.venv/bin/mlopsfile destroy --auto-approve && ../../.venv/bin/mlopsfile down)"
