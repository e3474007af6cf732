#!/usr/bin/env bash
# A 3-node RabbitMQ cluster on this one machine, for the tests of
# clustered brokers (docs/deploy.md, "Clustered brokers"). Each node is a
# rabbitmq.sh node (Debian's rabbitmq-server) with its own node name
# (skeinc1-N@localhost … skeinc3-N@localhost, N a checksum of the state
# directory), AMQP and distribution ports and
# data directory; the three share one Erlang cookie, one epmd on a port of
# their own, and the user and password. Nodes 2 and 3 join node 1 with
# rabbitmqctl join_cluster. Quorum queues and streams are replicated on
# the three nodes.
#
#   rabbitmq-cluster.sh start          install if missing, start the nodes, join
#                                      them, print export lines
#   rabbitmq-cluster.sh stop           stop every node and epmd, remove the data
#   rabbitmq-cluster.sh kill-node N    SIGKILL node N (1-3) and its process group,
#                                      as a crashed machine
#   rabbitmq-cluster.sh stop-node N    stop node N cleanly
#   rabbitmq-cluster.sh start-node N   start node N again on its ports and data;
#                                      it rejoins the cluster by itself
#   rabbitmq-cluster.sh ctl N ARGS...  rabbitmqctl ARGS against node N
#   rabbitmq-cluster.sh status         exit 0 when all three nodes answer
#   rabbitmq-cluster.sh env            print the export lines again
#
# Export lines: SKEIN_TEST_AMQP_CLUSTER (the nodes' AMQP URLs,
# comma-separated, node 1 first) and SKEIN_TEST_AMQP_CLUSTER_CTL (this
# script with its directory, to which a test appends "kill-node 2").
#
# State lives in $SKEIN_RABBITMQ_CLUSTER_DIR (default
# $SKEIN_TEST_DIR/rabbitmq-cluster). Logs go to stderr and to the nodes'
# directories; stdout carries only the export lines.
set -euo pipefail

script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
single=$(dirname "$script")/rabbitmq.sh
dir=${SKEIN_RABBITMQ_CLUSTER_DIR:-${SKEIN_TEST_DIR:-/tmp/skein-test-$(id -u)}/rabbitmq-cluster}
nodes=(1 2 3)

log() { echo "rabbitmq-cluster.sh: $*" >&2; }

# A checksum of the state directory in the names: two test runs on one
# machine, each with its own directory, never share a node name.
node_name() { echo "skeinc$1-$(printf %s "$dir" | cksum | cut -d' ' -f1)@localhost"; }

# node N VERB...: rabbitmq.sh VERB for node N.
node() {
	local n=$1
	shift
	SKEIN_RABBITMQ_DIR=$dir/n$n SKEIN_RABBITMQ_NODE=$(node_name "$n") bash "$single" "$@"
}

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # free_port

# setup picks every port, the cookie and the password once, and writes
# each node's ports.env and cookie where rabbitmq.sh reads them.
setup() {
	local n kind
	mkdir -p "$dir"
	if [ ! -f "$dir/cluster.env" ]; then
		local used=" " p pass cookie
		pick() {
			p=$(free_port)
			while [[ $used == *" $p "* ]]; do p=$(free_port); done
			used+="$p "
			echo "$p"
		}
		pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
		cookie=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Z' | head -c 20)
		{
			echo "EPMD_PORT=$(pick)"
			echo "AMQP_USER=skein"
			echo "AMQP_PASS=$pass"
			echo "COOKIE=$cookie"
			for n in "${nodes[@]}"; do
				echo "AMQP_PORT_$n=$(pick)"
				echo "DIST_PORT_$n=$(pick)"
			done
		} >"$dir/cluster.env.tmp"
		chmod 600 "$dir/cluster.env.tmp"
		mv "$dir/cluster.env.tmp" "$dir/cluster.env"
	fi
	# shellcheck disable=SC1091
	. "$dir/cluster.env"
	for n in "${nodes[@]}"; do
		local d=$dir/n$n a=AMQP_PORT_$n di=DIST_PORT_$n
		mkdir -p "$d/home"
		if [ ! -f "$d/ports.env" ]; then
			cat >"$d/ports.env" <<-EOF
				AMQP_PORT=${!a}
				DIST_PORT=${!di}
				EPMD_PORT=$EPMD_PORT
				AMQP_USER=$AMQP_USER
				AMQP_PASS=$AMQP_PASS
			EOF
			chmod 600 "$d/ports.env"
		fi
		if [ ! -f "$d/home/.erlang.cookie" ]; then
			printf '%s' "$COOKIE" >"$d/home/.erlang.cookie"
			chmod 400 "$d/home/.erlang.cookie"
		fi
	done
}

# The nodes share one epmd of the cluster's own (rabbitmq.sh would start
# one per node otherwise, and only the first could bind the port).
start_epmd() {
	if epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then return 0; fi
	epmd -port "$EPMD_PORT" -address 127.0.0.1 -daemon
	for _ in $(seq 1 50); do
		epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "epmd did not start on port $EPMD_PORT"
	return 1
}

stop_epmd() {
	for _ in $(seq 1 25); do
		epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
		epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 || return 0
		sleep 0.2
	done
	local pid
	pid=$(ss -ltnp "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
}

# joined N: node N's cluster status lists all three nodes as running.
joined() {
	local out
	out=$(node "$1" ctl cluster_status --formatter json 2>/dev/null) || return 1
	python3 -c '
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if len(d.get("running_nodes", [])) == 3 else 1)' "$out"
}

kill_node() {
	local n=$1 d=$dir/n$1 pid
	for f in server.pid rabbitmq.pid; do
		pid=$(cat "$d/$f" 2>/dev/null || true)
		[ -n "$pid" ] || continue
		# server.pid leads the node's process group (rabbitmq.sh starts it
		# with setsid): the Erlang VM and its helpers go with it.
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	done
	for f in server.pid rabbitmq.pid; do
		pid=$(cat "$d/$f" 2>/dev/null || true)
		[ -n "$pid" ] || continue
		for _ in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		rm -f "$d/$f"
	done
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
	. "$dir/cluster.env"
	local urls="" a
	for n in "${nodes[@]}"; do
		a=AMQP_PORT_$n
		urls+="amqp://$AMQP_USER:$AMQP_PASS@127.0.0.1:${!a}/,"
	done
	echo "export SKEIN_TEST_AMQP_CLUSTER=${urls%,}"
	echo "export SKEIN_TEST_AMQP_CLUSTER_CTL=\"env SKEIN_RABBITMQ_CLUSTER_DIR=$dir bash $script\""
}

case "${1:-}" in
start)
	setup
	start_epmd
	log "starting nodes $(node_name 1) $(node_name 2) $(node_name 3) in $dir"
	# rabbitmq.sh installs the package when it is missing: once, first.
	node 1 start >/dev/null
	pids=()
	for n in 2 3; do
		node "$n" start >/dev/null &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	for n in 2 3; do
		if joined "$n"; then continue; fi
		log "joining $(node_name "$n") to $(node_name 1)"
		# join_cluster prints errors about connection tracking tables
		# while the node is between apps; they are noise unless it fails.
		if ! { node "$n" ctl stop_app && node "$n" ctl join_cluster "$(node_name 1)" &&
			node "$n" ctl start_app; } >"$dir/join-$n.log" 2>&1; then
			log "joining $(node_name "$n") failed:"
			cat "$dir/join-$n.log" >&2
			exit 1
		fi
	done
	if ! joined 1; then
		log "the cluster did not form:"
		node 1 ctl cluster_status >&2 || true
		exit 1
	fi
	log "cluster is up"
	print_env
	;;
stop)
	if [ -f "$dir/cluster.env" ]; then
		setup
		# In parallel: the data goes with the cluster.
		pids=()
		for n in "${nodes[@]}"; do
			node "$n" stop-broker &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p" || true; done
		stop_epmd
	fi
	rm -rf "$dir"
	;;
kill-node)
	n=$(node_arg "${2:-}")
	setup
	log "SIGKILL $(node_name "$n")"
	kill_node "$n"
	;;
stop-node)
	n=$(node_arg "${2:-}")
	setup
	node "$n" stop-broker
	;;
start-node)
	n=$(node_arg "${2:-}")
	setup
	start_epmd
	node "$n" start-broker
	;;
ctl)
	n=$(node_arg "${2:-}")
	shift 2
	setup
	node "$n" ctl "$@"
	;;
status)
	[ -f "$dir/cluster.env" ] || exit 1
	setup
	joined 1
	;;
env) print_env ;;
*)
	echo "usage: $0 start|stop|kill-node N|stop-node N|start-node N|ctl N ARGS...|status|env" >&2
	exit 2
	;;
esac
