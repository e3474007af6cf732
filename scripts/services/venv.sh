#!/usr/bin/env bash
# The Python test environment: a virtual environment under .cache/venv with
# Apache Airflow 3 (pinned in deploy/airflow/requirements-test.txt), pytest,
# msgpack and the Skein Airflow provider (editable).
#
#   start: create or reuse the venv, print export SKEIN_TEST_VENV=... and
#          SKEIN_TEST_PYTHON=... on stdout (logs on stderr)
#   stop:  nothing runs; the venv stays as the cache between runs
#
# The venv is reused when the hash of the requirements file and the provider's
# pyproject.toml matches the one recorded at its last install; otherwise it is
# rebuilt. SKEIN_VENV_PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=$root/.cache/venv
req=$root/deploy/airflow/requirements-test.txt
stamp=$venv/.skein-stamp

log() { echo "venv: $*" >&2; }

want_stamp() {
	cat "$req" "$root/deploy/airflow/pyproject.toml" | sha256sum | cut -d' ' -f1
}

case "${1:-start}" in
start)
	py=${SKEIN_VENV_PYTHON:-python3}
	want=$(want_stamp)
	if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
		&& "$venv/bin/python" -c 'import airflow, pytest, skein_provider' 2>/dev/null; then
		log "reusing $venv"
	else
		log "creating $venv (pinned Airflow; takes about a minute)"
		rm -rf "$venv"
		mkdir -p "$root/.cache"
		"$py" -m venv "$venv"
		start=$(date +%s)
		# Installing all pins with --no-deps keeps the resolver out; a second,
		# dependency-checking pass makes sure nothing is missing.
		"$venv/bin/pip" install --quiet --no-deps -r "$req" >&2
		"$venv/bin/pip" install --quiet -r "$req" >&2
		"$venv/bin/pip" install --quiet --no-deps -e "$root/deploy/airflow" >&2
		"$venv/bin/pip" check >&2 || { log "pip check failed"; exit 1; }
		echo "$want" >"$stamp"
		log "installed in $(( $(date +%s) - start )) s"
	fi
	# An editable install points at this checkout; re-point it when the repo moved.
	if ! (cd /tmp && "$venv/bin/python" -c 'import skein_provider, sys; sys.exit(0 if skein_provider.__file__.startswith(sys.argv[1]) else 1)' "$root/deploy/airflow"); then
		"$venv/bin/pip" install --quiet --no-deps -e "$root/deploy/airflow" >&2
	fi
	echo "export SKEIN_TEST_VENV=$venv"
	echo "export SKEIN_TEST_PYTHON=$venv/bin/python"
	;;
stop)
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
