#!/usr/bin/env bash
# with-clusters.sh COMMAND...: start the 3-node NATS and RabbitMQ clusters
# of scripts/services (nats-cluster.sh, rabbitmq-cluster.sh) in a
# directory of their own, run COMMAND with their SKEIN_TEST_* variables,
# and stop them. make chaos runs the node-loss rounds of internal/cluster
# this way; make test starts the clusters itself (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
made=""
if [ -z "${SKEIN_TEST_DIR:-}" ]; then
	SKEIN_TEST_DIR=$(mktemp -d /tmp/skein-clusters.XXXXXX)
	made=$SKEIN_TEST_DIR
fi
export SKEIN_TEST_DIR
started=()
cleanup() {
	local rc=$?
	for ((i = ${#started[@]} - 1; i >= 0; i--)); do
		bash "scripts/services/${started[$i]}.sh" stop || true
	done
	# The programs' logs of a failed run stay (internal/cluster writes
	# them under $SKEIN_TEST_DIR/cluster).
	if [ -n "$made" ]; then
		if [ $rc = 0 ]; then rm -rf "$made"; else echo "logs kept in $made" >&2; fi
	fi
	exit $rc
}
trap cleanup EXIT INT TERM
for svc in nats-cluster rabbitmq-cluster; do
	echo "== starting $svc" >&2
	started+=("$svc")
	out=$(bash "scripts/services/$svc.sh" start)
	eval "$out"
done
"$@"
