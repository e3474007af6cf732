#!/usr/bin/env bash
# A RabbitMQ broker for the tests, on loopback, with its own node name,
# ports, data directory, Erlang cookie and epmd, so that it cannot collide
# with a broker already running on this machine.
#
#   rabbitmq.sh start         install if missing, start, wait, print export lines
#   rabbitmq.sh stop          stop the node and the epmd it started
#   rabbitmq.sh stop-broker   stop only the node (data and ports are kept)
#   rabbitmq.sh start-broker  start the node again on the same ports and data
#   rabbitmq.sh wipe-broker   stop the node, remove its data, start it again
#   rabbitmq.sh status        exit 0 when the node answers
#   rabbitmq.sh ctl ARGS...   run rabbitmqctl ARGS against the node (users,
#                             vhosts, permissions; stdin is passed through)
#
# State lives in $SKEIN_TEST_DIR/rabbitmq (or $SKEIN_RABBITMQ_DIR). Logs go
# to stderr and to that directory; stdout carries only the export lines.
# SKEIN_RABBITMQ_NODE names the node (default skeintest-N@localhost, N a
# checksum of the state directory, so that two test runs on one machine,
# each with its own directory, never share a node name). With
# SKEIN_RABBITMQ_TLS_DIR (ca.pem, server.pem, server-key.pem in it) the
# node also listens for amqps:// and verifies client certificates; `env`
# then prints SKEIN_TEST_AMQPS_URL too.
set -euo pipefail

script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
dir=${SKEIN_RABBITMQ_DIR:-${SKEIN_TEST_DIR:-/tmp/skein-test-$(id -u)}/rabbitmq}
node=${SKEIN_RABBITMQ_NODE:-skeintest-$(printf %s "$dir" | cksum | cut -d' ' -f1)@localhost}
tls=${SKEIN_RABBITMQ_TLS_DIR:-}
bin=/usr/lib/rabbitmq/bin

log() { echo "rabbitmq.sh: $*" >&2; }

install() {
	if [ -x "$bin/rabbitmq-server" ]; then return 0; fi
	log "rabbitmq-server is not installed; installing from Debian's packages"
	local sudo=""
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	if ! $sudo apt-get install -y --no-install-recommends rabbitmq-server >&2; then
		$sudo apt-get update >&2
		$sudo apt-get install -y --no-install-recommends rabbitmq-server >&2
	fi
	# The package starts the system broker, and with it an epmd on port
	# 4369 of every interface. Our node uses its own name, ports and epmd;
	# stop what the install started, so that the tests leave nothing
	# listening beyond loopback.
	$sudo invoke-rc.d rabbitmq-server stop >&2 2>/dev/null || $sudo service rabbitmq-server stop >&2 2>/dev/null || true
	ERL_EPMD_PORT=4369 epmd -kill >/dev/null 2>&1 || true
}

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # free_port

# setup writes the ports, cookie, config and credentials once; later calls
# (start-broker after stop-broker) reuse them so the node comes back on the
# same ports with the same data.
setup() {
	mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
	if [ ! -f "$dir/ports.env" ]; then
		local amqp dist epmd
		amqp=$(free_port)
		dist=$(free_port)
		epmd=$(free_port)
		while [ "$dist" = "$amqp" ]; do dist=$(free_port); done
		while [ "$epmd" = "$amqp" ] || [ "$epmd" = "$dist" ]; do epmd=$(free_port); done
		local pass
		pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
		cat >"$dir/ports.env" <<-EOF
			AMQP_PORT=$amqp
			DIST_PORT=$dist
			EPMD_PORT=$epmd
			AMQP_USER=skein
			AMQP_PASS=$pass
		EOF
		if [ -n "$tls" ]; then
			local amqps
			amqps=$(free_port)
			while [ "$amqps" = "$amqp" ] || [ "$amqps" = "$dist" ] || [ "$amqps" = "$epmd" ]; do amqps=$(free_port); done
			echo "AMQPS_PORT=$amqps" >>"$dir/ports.env"
		fi
	fi
	# shellcheck disable=SC1091
	. "$dir/ports.env"
	if [ ! -f "$dir/home/.erlang.cookie" ]; then
		head -c 32 /dev/urandom | base64 | tr -dc 'A-Z' | head -c 20 >"$dir/home/.erlang.cookie"
		chmod 400 "$dir/home/.erlang.cookie"
	fi
	cat >"$dir/rabbitmq.conf" <<-EOF
		listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
		loopback_users = none
		default_user = $AMQP_USER
		default_pass = $AMQP_PASS
		default_vhost = /
		max_message_size = 134217728
		consumer_timeout = 3600000
		log.file.level = info
		log.console = false
	EOF
	if [ -n "$tls" ]; then
		cat >>"$dir/rabbitmq.conf" <<-EOF
			listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
			ssl_options.cacertfile = $tls/ca.pem
			ssl_options.certfile = $tls/server.pem
			ssl_options.keyfile = $tls/server-key.pem
			ssl_options.verify = verify_peer
			ssl_options.fail_if_no_peer_cert = true
		EOF
	fi
	: >"$dir/enabled_plugins.erl"
	echo "[]." >"$dir/enabled_plugins.erl"
	: >"$dir/rabbitmq-env.conf"
	chmod 600 "$dir/rabbitmq.conf" "$dir/ports.env"
}

env_node() {
	export HOME=$dir/home
	export ERL_EPMD_PORT=$EPMD_PORT
	export ERL_EPMD_ADDRESS=127.0.0.1
	export RABBITMQ_NODENAME=$node
	export RABBITMQ_USE_LONGNAME=false
	export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	export RABBITMQ_NODE_PORT=$AMQP_PORT
	export RABBITMQ_DIST_PORT=$DIST_PORT
	export RABBITMQ_MNESIA_BASE=$dir/mnesia
	export RABBITMQ_LOG_BASE=$dir/log
	export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
	export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
	export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins.erl
	export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
	export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
	export RABBITMQ_ERLANG_COOKIE_FILE=$dir/home/.erlang.cookie
	export LANG=C.UTF-8 LC_ALL=C.UTF-8
}

ctl() { "$bin/rabbitmqctl" -n "$node" "$@"; }

running() {
	[ -f "$dir/ports.env" ] || return 1
	setup >/dev/null
	env_node
	ctl status >/dev/null 2>&1 || return 1
	# Also check that the AMQP listener accepts connections.
	(exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null
}

start_epmd() {
	if epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then return 0; fi
	epmd -port "$EPMD_PORT" -address 127.0.0.1 -daemon
	touch "$dir/epmd.ours"
	for _ in $(seq 1 50); do
		epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "epmd did not start on port $EPMD_PORT"
	return 1
}

start_broker() {
	setup
	env_node
	# epmd first: `running` asks rabbitmqctl, which would start an epmd of
	# its own on our port that stop then would not know to end.
	start_epmd
	if running; then return 0; fi
	log "starting node $node on 127.0.0.1:$AMQP_PORT (data $dir)"
	setsid nohup "$bin/rabbitmq-server" >>"$dir/log/server.out" 2>&1 </dev/null &
	echo $! >"$dir/server.pid"
	local deadline=$((SECONDS + 90))
	while [ $SECONDS -lt $deadline ]; do
		if ! kill -0 "$(cat "$dir/server.pid")" 2>/dev/null; then
			log "rabbitmq-server exited during startup; last lines of its log:"
			tail -n 30 "$dir/log/server.out" >&2 || true
			return 1
		fi
		# The AMQP listener opens last in the boot sequence: once it
		# accepts connections, the broker is ready.
		if (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null; then
			log "node $node is up"
			return 0
		fi
		sleep 0.25
	done
	log "node $node did not answer within 90s; last lines of its log:"
	tail -n 30 "$dir/log/server.out" >&2 || true
	return 1
}

stop_broker() {
	[ -f "$dir/ports.env" ] || return 0
	setup
	env_node
	# SIGTERM makes the Erlang VM stop RabbitMQ cleanly, without the few
	# seconds a rabbitmqctl call costs to boot.
	if [ -s "$dir/rabbitmq.pid" ] && kill -0 "$(cat "$dir/rabbitmq.pid")" 2>/dev/null; then
		log "stopping node $node"
		kill -TERM "$(cat "$dir/rabbitmq.pid")" 2>/dev/null || true
	elif ctl status >/dev/null 2>&1; then
		log "stopping node $node"
		ctl stop >/dev/null 2>&1 || true
	fi
	if [ -f "$dir/server.pid" ]; then
		local pid
		pid=$(cat "$dir/server.pid")
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "node did not stop; killing process group $pid"
			kill -TERM -- "-$pid" 2>/dev/null || true
			sleep 1
			kill -KILL -- "-$pid" 2>/dev/null || true
		fi
		rm -f "$dir/server.pid"
	fi
	# The Erlang VM may outlive the wrapper script for a moment.
	if [ -s "$dir/rabbitmq.pid" ]; then
		local vm
		vm=$(cat "$dir/rabbitmq.pid")
		for _ in $(seq 1 150); do
			kill -0 "$vm" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$vm" 2>/dev/null; then
			log "Erlang VM $vm did not stop; killing it"
			kill -KILL "$vm" 2>/dev/null || true
		fi
		rm -f "$dir/rabbitmq.pid"
	fi
	for _ in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null || break
		sleep 0.2
	done
}

print_env() {
	. "$dir/ports.env"
	echo "export SKEIN_TEST_AMQP_URL=amqp://$AMQP_USER:$AMQP_PASS@127.0.0.1:$AMQP_PORT/"
	echo "export SKEIN_TEST_AMQP_CTL=\"env SKEIN_RABBITMQ_DIR=$dir bash $script\""
	if [ -n "${AMQPS_PORT:-}" ]; then
		echo "export SKEIN_TEST_AMQPS_URL=amqps://$AMQP_USER:$AMQP_PASS@localhost:$AMQPS_PORT/"
	fi
}

case "${1:-}" in
start)
	install
	start_broker
	print_env
	;;
stop)
	stop_broker
	if [ -f "$dir/epmd.ours" ]; then
		. "$dir/ports.env"
		# epmd refuses -kill while the stopped node is still registered:
		# try for a few seconds, then end the process listening on its port.
		for _ in $(seq 1 25); do
			epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
			epmd -port "$EPMD_PORT" -names >/dev/null 2>&1 || break
			sleep 0.2
		done
		if epmd -port "$EPMD_PORT" -names >/dev/null 2>&1; then
			pid=$(ss -ltnp "sport = :$EPMD_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
			if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
		fi
		rm -f "$dir/epmd.ours"
	fi
	;;
stop-broker) stop_broker ;;
start-broker) start_broker ;;
wipe-broker)
	# A broker back without its data (a volume not kept, a replaced
	# machine): stopped, its database removed, started again. The
	# configured default user is made again at boot, so clients can
	# reconnect; their queues, streams and messages are gone.
	stop_broker
	rm -rf "$dir/mnesia"
	start_broker
	;;
status) running ;;
env) print_env ;;
ctl)
	shift
	setup >/dev/null
	env_node
	ctl "$@"
	;;
*)
	echo "usage: $0 start|stop|stop-broker|start-broker|wipe-broker|status|env|ctl ARGS..." >&2
	exit 2
	;;
esac
