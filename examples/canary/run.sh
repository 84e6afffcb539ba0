#!/usr/bin/env bash
# A canary rollout end to end: serve iris, register a new version, roll it out 20% -> 50%
# -> 100% under a steady client with error-rate and latency gates, then show the history.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
(cd "$root" && bash .ci/setup-env)
bin="$root/.venv/bin"
cd "$here"
"$bin/python" "$root/examples/quickstart/train.py" --project . --if-missing
"$bin/mlopsfile" apply --auto-approve
"$bin/python" traffic.py 150 &
client=$!
"$bin/python" "$root/examples/quickstart/train.py" --project . --C 0.5   # a new version; @champion moves to it
"$bin/mlopsfile" plan
"$bin/mlopsfile" apply --auto-approve --wait
"$bin/mlopsfile" status
wait "$client"
"$bin/mlopsfile" history iris
echo
echo "Stop everything: (cd examples/canary && ../../.venv/bin/mlopsfile destroy --auto-approve && ../../.venv/bin/mlopsfile down)"
