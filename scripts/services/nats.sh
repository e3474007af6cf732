#!/usr/bin/env bash
# nats-server processes with JetStream on loopback, for the tests: the
# oldest and the newest supported versions (docs/deploy.md, "Supported
# NATS servers").
#   oldest: Debian's package (2.9.10 in bookworm), installed if missing.
#   newest: built from the nats-server module in go.mod (the version the
#           embedded server runs).
#   start: install or build, start both, wait until they answer, print
#          export lines: SKEIN_TEST_NATS_URL (oldest),
#          SKEIN_TEST_NATS_URL_NEWEST, and SKEIN_TEST_NATS_SERVERS (both
#          binaries, oldest first, ':'-separated) for tests that start
#          and kill their own servers.
#   stop:  stop both and remove their data.
set -euo pipefail
dir=${SKEIN_TEST_DIR:?SKEIN_TEST_DIR must be set}/nats
repo=$(cd "$(dirname "$0")/../.." && pwd)

# serve NAME BINARY: start BINARY with its own port and store under
# $dir/NAME, wait for it, print its URL.
serve() {
	local name=$1 bin=$2 d=$dir/$1 port
	mkdir -p "$d"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat > "$d/server.conf" <<CONF
listen: "127.0.0.1:$port"
max_payload: 8MB
jetstream { store_dir: "$d/js" }
CONF
	"$bin" -c "$d/server.conf" -l "$d/server.log" >/dev/null 2>&1 &
	echo $! > "$d/pid"
	for _ in $(seq 1 100); do
		if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
			echo "nats://127.0.0.1:$port"
			return 0
		fi
		sleep 0.1
	done
	echo "nats-server ($name, $bin) did not come up; log:" >&2
	cat "$d/server.log" >&2 || true
	return 1
}

case "${1:-}" in
start)
	if ! command -v nats-server >/dev/null; then
		echo "installing nats-server" >&2
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >&2
	fi
	oldest=$(command -v nats-server)
	mkdir -p "$dir/bin"
	newest=$dir/bin/nats-server
	echo "building nats-server from go.mod" >&2
	(cd "$repo" && go build -o "$newest" github.com/nats-io/nats-server/v2) >&2
	echo "nats-server oldest: $("$oldest" --version), newest: $("$newest" --version)" >&2
	url_old=$(serve oldest "$oldest")
	url_new=$(serve newest "$newest")
	echo "export SKEIN_TEST_NATS_URL=$url_old"
	echo "export SKEIN_TEST_NATS_URL_NEWEST=$url_new"
	echo "export SKEIN_TEST_NATS_SERVERS=$oldest:$newest"
	;;
stop)
	for name in oldest newest; do
		if [ -f "$dir/$name/pid" ]; then
			kill "$(cat "$dir/$name/pid")" 2>/dev/null || true
			rm -f "$dir/$name/pid"
		fi
	done
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
