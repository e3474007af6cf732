#!/usr/bin/env bash
# The one command that runs every test: installs and starts what the tests
# need on loopback (nats-server, rabbitmq-server, versitygw, a Python venv),
# runs the Go and Python suites, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export SKEIN_TEST_DIR=${SKEIN_TEST_DIR:-$(mktemp -d /tmp/skein-test.XXXXXX)}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
started=()

cleanup() {
	local rc=$?
	for ((i=${#started[@]}-1; i>=0; i--)); do
		bash "scripts/services/${started[$i]}.sh" stop || true
	done
	exit $rc
}
trap cleanup EXIT INT TERM

# Each service script prints "export VAR=value" lines on start.
for svc in $(ls scripts/services/*.sh 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sh$//' | sort); do
	echo "== starting $svc" >&2
	if out=$(bash "scripts/services/$svc.sh" start); then
		started+=("$svc")
		eval "$out"
	else
		echo "== $svc did not start" >&2
		if [ "${CI:-}" = "true" ]; then exit 1; fi
	fi
done

echo "== gofmt" >&2
bad=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$bad" ]; then echo "gofmt would change: $bad" >&2; exit 1; fi
echo "== go vet" >&2
go vet ./...
echo "== go test -race" >&2
go test -race -count=1 -timeout 40m ./...

for t in scripts/tests/*.sh; do
	[ -e "$t" ] || continue
	echo "== $t" >&2
	bash "$t"
done
