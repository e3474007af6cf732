#!/usr/bin/env bash
# A nats-server process with JetStream on loopback, for the tests.
#   start: install nats-server from Debian's packages if missing, start it,
#          wait until it answers, print export lines.
#   stop:  stop it and remove its data.
set -euo pipefail
dir=${SKEIN_TEST_DIR:?SKEIN_TEST_DIR must be set}/nats
case "${1:-}" in
start)
	if ! command -v nats-server >/dev/null; then
		echo "installing nats-server" >&2
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >&2
	fi
	mkdir -p "$dir"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	cat > "$dir/server.conf" <<CONF
listen: "127.0.0.1:$port"
max_payload: 8MB
jetstream { store_dir: "$dir/js" }
CONF
	nats-server -c "$dir/server.conf" -l "$dir/server.log" >/dev/null 2>&1 &
	echo $! > "$dir/pid"
	for _ in $(seq 1 100); do
		if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
			echo "export SKEIN_TEST_NATS_URL=nats://127.0.0.1:$port"
			exit 0
		fi
		sleep 0.1
	done
	echo "nats-server did not come up; log:" >&2
	cat "$dir/server.log" >&2 || true
	exit 1
	;;
stop)
	if [ -f "$dir/pid" ]; then
		kill "$(cat "$dir/pid")" 2>/dev/null || true
		rm -f "$dir/pid"
	fi
	rm -rf "$dir"
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
