#!/usr/bin/env bash
# versitygw: a real S3 server on loopback for the storage tests.
#   start: install versitygw if missing, start it with a posix backend in a
#          directory under $SKEIN_TEST_DIR, wait until it answers, and print
#          the export lines the tests read (SKEIN_TEST_S3_ENDPOINT/ACCESS/SECRET).
#   stop:  stop the server started by `start` (by its recorded pid).
# Idempotent: a second start reuses a running server; stop with none is fine.
# Logs go to stderr and $dir/versitygw.log; stdout carries only export lines.
set -euo pipefail

version=v1.8.0
base=${SKEIN_TEST_DIR:-/tmp/skein-test}
dir=$base/versitygw
pidfile=$dir/pid
envfile=$dir/env
access=skeintest
# A throwaway secret for a server that only listens on loopback.
secret=skeintest-secret-$(id -u)

log() { echo "versitygw: $*" >&2; }

running() {
	[ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # free_port

start() {
	mkdir -p "$dir"
	if running && [ -f "$envfile" ]; then
		log "already running (pid $(cat "$pidfile"))"
		cat "$envfile"
		return 0
	fi
	bin=$(go env GOPATH)/bin/versitygw
	if [ ! -x "$bin" ]; then
		log "installing versitygw $version"
		GOFLAGS=-buildvcs=false go install "github.com/versity/versitygw/cmd/versitygw@$version" >&2
	fi
	root=$dir/data
	mkdir -p "$root"
	port=$(free_port)
	log "starting on 127.0.0.1:$port, data in $root"
	ROOT_ACCESS_KEY="$access" ROOT_SECRET_KEY="$secret" \
		setsid "$bin" --port "127.0.0.1:$port" --quiet posix "$root" \
		>>"$dir/versitygw.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	endpoint=http://127.0.0.1:$port
	for _ in $(seq 1 100); do
		# Any HTTP answer (403 for an unsigned request) means it is up.
		if code=$(curl -s -o /dev/null -w '%{http_code}' "$endpoint/" 2>/dev/null) && [ "$code" != "000" ]; then
			{
				echo "export SKEIN_TEST_S3_ENDPOINT=$endpoint"
				echo "export SKEIN_TEST_S3_ACCESS=$access"
				echo "export SKEIN_TEST_S3_SECRET=$secret"
			} >"$envfile"
			cat "$envfile"
			log "up (pid $(cat "$pidfile"))"
			return 0
		fi
		if ! running; then
			log "exited during start; log follows"
			tail -n 20 "$dir/versitygw.log" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	log "did not answer in 10 s"
	stop
	return 1
}

stop() {
	if running; then
		pid=$(cat "$pidfile")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		log "stopped (pid $pid)"
	fi
	rm -f "$pidfile" "$envfile"
	rm -rf "$dir/data"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
