#!/usr/bin/env bash
# The quickstart: install, train and register an iris model in a local MLflow, apply
# specs/ (a local Ray head starts on demand and keeps serving), query the model once.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash .ci/setup-env
bin=.venv/bin
"$bin/python" examples/quickstart/train.py --if-missing
"$bin/mlopsfile" apply --auto-approve
"$bin/mlopsfile" status
"$bin/python" examples/quickstart/query.py
echo
echo "The model keeps serving. Try: .venv/bin/mlopsfile plan   |   stop everything: .venv/bin/mlopsfile destroy --auto-approve && .venv/bin/mlopsfile down"
