#!/usr/bin/env bash
# The Airflow provider's tests in real Apache Airflow: builds submit,
# coordinator and runtime, puts them on PATH and runs the provider's pytest
# suite with the venv's python (scripts/services/venv.sh makes the venv and
# installs the provider from its wheel). pytest runs from the tests folder so
# that what is imported, there and in the airflow commands the tests run, is
# the installed wheel, never the checkout's skein_provider.
# pytest's exit code 5 (no tests collected) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
export SKEIN_TEST_DIR=${SKEIN_TEST_DIR:-$(mktemp -d /tmp/skein-test.XXXXXX)}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

if [ -z "${SKEIN_TEST_PYTHON:-}" ]; then
	eval "$(bash scripts/services/venv.sh start)"
fi

mkdir -p "$SKEIN_TEST_DIR/bin"
missing=()
for c in submit coordinator runtime; do
	[ -d "cmd/$c" ] || missing+=("cmd/$c")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "== building submit, coordinator, runtime" >&2
	go build -o "$SKEIN_TEST_DIR/bin/" ./cmd/submit ./cmd/coordinator ./cmd/runtime
	export PATH="$SKEIN_TEST_DIR/bin:$PATH"
	export SKEIN_SUBMIT="$SKEIN_TEST_DIR/bin/submit"
else
	echo "== not built (missing ${missing[*]}): the acceptance tests will fail under CI, skip elsewhere" >&2
fi

if ! command -v nats-server >/dev/null; then
	echo "== installing nats-server" >&2
	(apt-get install -y nats-server >&2 || { apt-get update >&2 && apt-get install -y nats-server >&2; }) || true
fi


cd deploy/airflow/tests
set +e
"$SKEIN_TEST_PYTHON" -m pytest -p no:cacheprovider -o addopts="" -rs -q . "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
	echo "airflow tests: pytest collected no tests" >&2
	exit 1
fi
exit $rc
