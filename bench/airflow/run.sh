#!/usr/bin/env bash
# Runs bench/airflow/run.py with the test venv and freshly built Skein binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(bash scripts/services/venv.sh start)"
bin=$(mktemp -d /tmp/skein-bench-bin.XXXXXX)
go build -o "$bin/" ./cmd/submit ./cmd/coordinator ./cmd/runtime
export PATH="$bin:$PATH" SKEIN_SUBMIT="$bin/submit"
exec "$SKEIN_TEST_PYTHON" bench/airflow/run.py "$@"
