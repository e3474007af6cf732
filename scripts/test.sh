#!/usr/bin/env bash
# The one command that runs every test: installs and starts what the tests
# need on loopback (nats-server, rabbitmq-server, a 3-node cluster of each,
# versitygw, a Python venv),
# runs the Go and Python suites, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export SKEIN_TEST_DIR=${SKEIN_TEST_DIR:-$(mktemp -d /tmp/skein-test.XXXXXX)}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
started=()
declare -A bgpid=() # services starting in the background

cleanup() {
	local rc=$?
	for pid in "${bgpid[@]}"; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
	done
	for ((i=${#started[@]}-1; i>=0; i--)); do
		bash "scripts/services/${started[$i]}.sh" stop || true
	done
	exit $rc
}
trap cleanup EXIT INT TERM

# Each service script prints "export VAR=value" lines on start. The
# 3-node clusters (*-cluster.sh, which reuse what the single-node script
# before them in this order installed) start in the background while the
# other services, gofmt and go vet go on; go test waits for them.
background=()
for svc in $(ls scripts/services/*.sh 2>/dev/null | xargs -n1 basename 2>/dev/null | sed 's/\.sh$//' | sort); do
	if [[ $svc == *-cluster ]]; then
		echo "== starting $svc (in the background)" >&2
		background+=("$svc")
		started+=("$svc") # its stop is harmless if the start failed
		bash "scripts/services/$svc.sh" start >"$SKEIN_TEST_DIR/$svc.env" &
		bgpid[$svc]=$!
		continue
	fi
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

for svc in "${background[@]}"; do
	t0=$SECONDS
	ok=true
	wait "${bgpid[$svc]}" || ok=false
	unset "bgpid[$svc]"
	if $ok; then
		eval "$(cat "$SKEIN_TEST_DIR/$svc.env")"
		echo "== $svc is up (waited $((SECONDS - t0))s for it after go vet)" >&2
	else
		echo "== $svc did not start" >&2
		if [ "${CI:-}" = "true" ]; then exit 1; fi
	fi
done
echo "== go test -race" >&2
go test -race -count=1 -timeout 40m ./...

for t in scripts/tests/*.sh; do
	[ -e "$t" ] || continue
	echo "== $t" >&2
	bash "$t"
done
