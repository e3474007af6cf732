#!/bin/sh
# skein-users.sh: create a Skein tenant on RabbitMQ: a virtual host and
# five users with the least rights of their role, NS-submitter,
# NS-coordinator, NS-runtime, NS-watcher (reads job events) and
# NS-notifier (publishes trigger events to the exchange NS.notify only).
#
#   SKEIN_<NS>_SUBMITTER_PASSWORD=… SKEIN_<NS>_COORDINATOR_PASSWORD=… \
#   SKEIN_<NS>_RUNTIME_PASSWORD=… SKEIN_<NS>_WATCHER_PASSWORD=… \
#   SKEIN_<NS>_NOTIFIER_PASSWORD=… \
#   skein-users.sh [-p POOL]... VHOST NAMESPACE
#
# NS is the namespace upper-cased with '-' as '_'. The programs then use
# amqp://NS-ROLE@host:5672/VHOST?ns=NAMESPACE with the role's password in
# SKEIN_BUS_PASSWORD (or --bus-password-file). -p POOL (repeatable,
# default "default") names the pools the namespace's runtimes may take
# tasks from (with their "POOL-reduce" pools). Passwords reach rabbitmqctl
# on its standard input, never its command line. RABBITMQCTL names the
# rabbitmqctl command (default: rabbitmqctl; it may carry arguments, e.g.
# "rabbitmqctl -n rabbit@host"). Running it again updates passwords and
# permissions. See docs/security.md for what each right is for.
set -eu

pools=""
while [ $# -gt 0 ]; do
	case "$1" in
	-p) [ $# -ge 2 ] || { echo "skein-users.sh: -p needs a pool" >&2; exit 2; }
		pools="$pools $2"; shift 2 ;;
	-h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "skein-users.sh: unknown flag $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -eq 2 ] || { echo "usage: skein-users.sh [-p POOL]... VHOST NAMESPACE" >&2; exit 2; }
vhost=$1 ns=$2
[ -n "$pools" ] || pools=default
token_ok() { case "$1" in ''|*[!a-z0-9_-]*) return 1 ;; esac; }
token_ok "$ns" || { echo "skein-users.sh: bad namespace $ns (lower-case letters, digits, - and _)" >&2; exit 2; }
for p in $pools; do token_ok "$p" || { echo "skein-users.sh: bad pool name $p" >&2; exit 2; }; done

ctl() { ${RABBITMQCTL:-rabbitmqctl} "$@"; }
V=$(echo "$ns" | tr 'a-z-' 'A-Z_')

# Object names (bus/rabbitmq): exchanges NS.events (topic, with the stream
# queue NS.events), NS.broadcast (topic), NS.rpc (direct, to the queues
# NS.rpc.<subject>) and NS.requeue (direct, to the work, dead-letter and
# delay queues, each bound under its own name); work queues are named as
# the pool in the default namespace "skein" and NS.<pool> in any other,
# each with <queue>.dead; delayed retries wait in NS.delay.*; listeners use
# server-named amq.gen-* queues.
if [ "$ns" = skein ]; then qp=""; else qp="$ns\\."; fi
queues=""
for p in $pools; do
	queues="$queues${queues:+|}$qp$p|$qp$p-reduce"
done
n=$ns
ev="$n\\.events" bc="$n\\.broadcast" rpc="$n\\.rpc" rq="$n\\.requeue"
# the delay queues of the pools' queues (older releases: no "ms")
dl="$n\\.delay\\.($queues)\\.[0-9]+(ms)?"

ctl list_vhosts name | grep -qx "$vhost" || ctl add_vhost "$vhost" >/dev/null

user() { # user role
	var="SKEIN_${V}_$(echo "$2" | tr 'a-z' 'A-Z')_PASSWORD"
	eval "pw=\${$var:-}"
	[ -n "$pw" ] || { echo "skein-users.sh: set $var" >&2; exit 2; }
	if ctl list_users name | grep -qx "$1"; then
		printf '%s\n' "$pw" | ctl change_password "$1" >/dev/null
	else
		printf '%s\n' "$pw" | ctl add_user "$1" >/dev/null
	fi
}

# submitter: publishes API requests (NS.rpc), reads the event stream (end
# records, task events), binds its own listener queues to progress
# notices only.
user "$ns-submitter" submitter
ctl set_permissions -p "$vhost" "$ns-submitter" '^amq\.gen-.*' "^($rpc|amq\\.gen-.*)\$" "^($ev|$bc|amq\\.gen-.*)\$" >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-submitter" "$n.broadcast" '^$' '^progress\.' >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-submitter" "$n.events" '^$' '^$' >/dev/null

# coordinator: owns the namespace's objects on the vhost (declares the
# exchanges, the stream and the work queues, publishes tasks through the
# default exchange, answers requests through direct reply-to); on the
# event stream it writes the job log, reducer feeds and the marks it puts
# on a job's events when it takes the job up, and trigger records; it
# declares and consumes triggers' queues and the exchange NS.notify.
user "$ns-coordinator" coordinator
ctl set_permissions -p "$vhost" "$ns-coordinator" '.*' '.*' '.*' >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-coordinator" "$n.events" '^(job|jobevents|feed|task|trigger)\.' '.*' >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-coordinator" "$n.broadcast" '.*' '.*' >/dev/null

# runtime: takes tasks of its pools' queues, writes task events only,
# reads the stream (reducer feeds), hears cancel notices; hands tasks back
# (retries, delayed retries, dead letters) through NS.requeue, binding its
# queues to it. No write on the default exchange: it reaches every queue of
# the vhost, the API's included.
user "$ns-runtime" runtime
ctl set_permissions -p "$vhost" "$ns-runtime" "^(($queues)(\\.dead)?|$dl|amq\\.gen-.*)\$" "^($ev|$rq|($queues)(\\.dead)?|$dl|amq\\.gen-.*)\$" "^($queues|$ev|$bc|$rq|$dl|amq\\.gen-.*)\$" >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-runtime" "$n.events" '^task\.[^.]+$' '^$' >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-runtime" "$n.broadcast" '^$' '^cancel$' >/dev/null

# watcher: reads the event stream (job events; RabbitMQ cannot narrow a
# stream queue's readers to some routing keys: the watcher can read the
# whole stream, as a submitter can), publishes nothing.
user "$ns-watcher" watcher
ctl set_permissions -p "$vhost" "$ns-watcher" '^amq\.gen-.*' '^$' "^($ev)\$" >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-watcher" "$n.events" '^$' '^$' >/dev/null
ctl set_topic_permissions -p "$vhost" "$ns-watcher" "$n.broadcast" '^$' '^$' >/dev/null
# notifier: publishes to the exchange NS.notify (declared by the
# coordinator for the triggers bound to it: an S3 server's bucket
# notifications), nothing else; reads nothing. Not the default exchange,
# which reaches every queue of the vhost.
user "$ns-notifier" notifier
ctl set_permissions -p "$vhost" "$ns-notifier" '^$' "^$n\\.notify\$" '^$' >/dev/null
echo "skein-users.sh: vhost $vhost, namespace $ns: users $ns-submitter, $ns-coordinator, $ns-runtime, $ns-watcher, $ns-notifier (pools:$pools)"
