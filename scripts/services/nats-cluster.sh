#!/usr/bin/env bash
# A 3-node nats-server cluster with JetStream on loopback, for the tests
# of clustered brokers (docs/deploy.md, "Clustered brokers"). The nodes
# run the newest supported nats-server (built from the nats-server module
# in go.mod, as nats.sh builds it), each with its own client, cluster
# (route) and monitoring port and its own store directory.
#
#   nats-cluster.sh start          build, start the three nodes, wait until
#                                  JetStream has a meta leader, print export lines
#   nats-cluster.sh stop           stop every node and remove the data
#   nats-cluster.sh kill-node N    SIGKILL node N (1-3), as a crashed machine
#   nats-cluster.sh stop-node N    stop node N cleanly (SIGTERM)
#   nats-cluster.sh pause-node N   SIGSTOP node N: its connections stay up and
#                                  what is sent to it waits unread (resume-node
#                                  N sends SIGCONT; kill-node kills it paused)
#   nats-cluster.sh start-node N   start node N again on its ports and store,
#                                  wait until it serves and JetStream is current
#   nats-cluster.sh status         exit 0 when every node is healthy
#   nats-cluster.sh env            print the export lines again
#
# Export lines: SKEIN_TEST_NATS_CLUSTER (the nodes' client URLs,
# comma-separated, node 1 first), SKEIN_TEST_NATS_CLUSTER_MONITOR (their
# monitoring URLs, same order: /connz shows who is connected where) and
# SKEIN_TEST_NATS_CLUSTER_CTL (this script with its directory, to which a
# test appends "kill-node 2", "start-node 2").
#
# State lives in $SKEIN_NATS_CLUSTER_DIR (default
# $SKEIN_TEST_DIR/nats-cluster). Logs go to stderr and that directory;
# stdout carries only the export lines.
set -euo pipefail

script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$script")/../.." && pwd)
dir=${SKEIN_NATS_CLUSTER_DIR:-${SKEIN_TEST_DIR:?SKEIN_TEST_DIR or SKEIN_NATS_CLUSTER_DIR must be set}/nats-cluster}
nodes=(1 2 3)

log() { echo "nats-cluster.sh: $*" >&2; }

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # free_port

# setup picks the ports once and writes each node's configuration; a node
# started again keeps its ports and store.
setup() {
	local n kind
	mkdir -p "$dir/bin"
	if [ ! -f "$dir/ports.env" ]; then
		local used=" " p
		: >"$dir/ports.env.tmp"
		for n in "${nodes[@]}"; do
			for kind in CLIENT ROUTE MON; do
				p=$(free_port)
				while [[ $used == *" $p "* ]]; do p=$(free_port); done
				used+="$p "
				echo "${kind}_$n=$p" >>"$dir/ports.env.tmp"
			done
		done
		mv "$dir/ports.env.tmp" "$dir/ports.env"
	fi
	# shellcheck disable=SC1091
	. "$dir/ports.env"
	local routes="" r
	for n in "${nodes[@]}"; do
		r=ROUTE_$n
		routes+="nats-route://127.0.0.1:${!r}, "
	done
	for n in "${nodes[@]}"; do
		local c=CLIENT_$n rt=ROUTE_$n m=MON_$n
		mkdir -p "$dir/n$n"
		cat >"$dir/n$n/server.conf" <<-CONF
			server_name: "skeintest-n$n"
			listen: "127.0.0.1:${!c}"
			http: "127.0.0.1:${!m}"
			max_payload: 8MB
			jetstream { store_dir: "$dir/n$n/js" }
			cluster {
			  name: "skeintest"
			  listen: "127.0.0.1:${!rt}"
			  routes: [ ${routes%, } ]
			}
		CONF
	done
}

bin() { echo "$dir/bin/nats-server"; }

build() {
	if [ -x "$(bin)" ]; then return 0; fi
	log "building nats-server from go.mod"
	(cd "$repo" && GOFLAGS=${GOFLAGS:--buildvcs=false} go build -o "$(bin)" github.com/nats-io/nats-server/v2) >&2
}

pid_of() { cat "$dir/n$1/pid" 2>/dev/null || true; }

alive() {
	local pid
	pid=$(pid_of "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# healthy N: node N answers /healthz, which (2.10+) is OK only once
# JetStream has a meta leader and the node is current with it.
healthy() {
	local m=MON_$1
	curl -fsS -m 2 "http://127.0.0.1:${!m}/healthz" >/dev/null 2>&1
}

launch() {
	local n=$1
	if alive "$n"; then return 0; fi
	"$(bin)" -c "$dir/n$n/server.conf" -l "$dir/n$n/server.log" >/dev/null 2>&1 &
	echo $! >"$dir/n$n/pid"
}

# wait_healthy N...: until each node is healthy, within 60 s.
wait_healthy() {
	local deadline=$((SECONDS + 60)) n
	for n in "$@"; do
		while ! healthy "$n"; do
			if ! alive "$n"; then
				log "node $n exited during startup; last lines of its log:"
				tail -n 30 "$dir/n$n/server.log" >&2 || true
				return 1
			fi
			if [ $SECONDS -ge $deadline ]; then
				log "node $n not healthy within 60s; last lines of its log:"
				tail -n 30 "$dir/n$n/server.log" >&2 || true
				return 1
			fi
			sleep 0.1
		done
	done
}

stop_node() {
	local n=$1 sig=${2:-TERM} pid
	pid=$(pid_of "$n")
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "node $n (pid $pid) did not stop; killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/n$n/pid"
}

node_arg() {
	case "${1:-}" in
	1 | 2 | 3) echo "$1" ;;
	*)
		log "want a node number, 1 to 3"
		exit 2
		;;
	esac
}

print_env() {
	local n
	. "$dir/ports.env"
	local urls="" mons="" c m
	for n in "${nodes[@]}"; do
		c=CLIENT_$n m=MON_$n
		urls+="nats://127.0.0.1:${!c},"
		mons+="http://127.0.0.1:${!m},"
	done
	echo "export SKEIN_TEST_NATS_CLUSTER=${urls%,}"
	echo "export SKEIN_TEST_NATS_CLUSTER_MONITOR=${mons%,}"
	echo "export SKEIN_TEST_NATS_CLUSTER_CTL=\"env SKEIN_NATS_CLUSTER_DIR=$dir bash $script\""
}

case "${1:-}" in
start)
	setup
	build
	log "$("$(bin)" --version); starting 3 nodes in $dir"
	for n in "${nodes[@]}"; do launch "$n"; done
	wait_healthy "${nodes[@]}"
	log "cluster is up"
	print_env
	;;
stop)
	if [ -f "$dir/ports.env" ]; then
		for n in "${nodes[@]}"; do stop_node "$n"; done
	fi
	rm -rf "$dir"
	;;
kill-node)
	n=$(node_arg "${2:-}")
	setup
	log "SIGKILL node $n"
	stop_node "$n" KILL
	;;
stop-node)
	n=$(node_arg "${2:-}")
	setup
	log "stopping node $n"
	stop_node "$n" TERM
	;;
pause-node | resume-node)
	n=$(node_arg "${2:-}")
	setup
	sig=STOP
	[ "$1" = resume-node ] && sig=CONT
	log "SIG$sig node $n"
	kill -"$sig" "$(pid_of "$n")"
	;;
start-node)
	n=$(node_arg "${2:-}")
	setup
	build
	log "starting node $n"
	launch "$n"
	wait_healthy "$n"
	;;
status)
	[ -f "$dir/ports.env" ] || exit 1
	setup
	for n in "${nodes[@]}"; do healthy "$n" || exit 1; done
	;;
env) print_env ;;
*)
	echo "usage: $0 start|stop|kill-node N|stop-node N|pause-node N|resume-node N|start-node N|status|env" >&2
	exit 2
	;;
esac
