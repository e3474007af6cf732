#!/usr/bin/env bash
# The Python test environment: a virtual environment under .cache/venv with
# Apache Airflow 3 (pinned in deploy/airflow/requirements-test.txt), pytest,
# msgpack, cloudpickle and the Skein Airflow provider, installed from a wheel
# built as a user would install it (never editable: building in the checkout
# would write egg-info and build/ into it, so the wheel is built from a
# temporary copy of deploy/airflow).
#
#   start: create or reuse the venv, print export SKEIN_TEST_VENV=... and
#          SKEIN_TEST_PYTHON=... on stdout (logs on stderr)
#   stop:  nothing runs; the venv stays as the cache between runs
#
# The venv is reused when the hash of the requirements file and the provider's
# pyproject.toml matches the one recorded at its last install; otherwise it is
# rebuilt. The provider's wheel is rebuilt and reinstalled whenever its
# sources changed since the last install; SKEIN_TEST_PROVIDER_WHEEL is the
# wheel installed. SKEIN_VENV_PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=$root/.cache/venv
req=$root/deploy/airflow/requirements-test.txt
stamp=$venv/.skein-stamp

log() { echo "venv: $*" >&2; }

want_stamp() {
	cat "$req" | sha256sum | cut -d' ' -f1
}

# The hash of what goes into the provider's wheel.
provider_stamp() {
	(cd "$root/deploy/airflow" && find pyproject.toml README.md skein_provider -type f \
		-not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -d' ' -f1
}

# Builds the provider's wheel from a temporary copy of deploy/airflow (no
# egg-info or build/ in the checkout) into $venv/wheels and installs it.
install_provider() {
	local tmp
	tmp=$(mktemp -d)
	mkdir -p "$tmp/src"
	(cd "$root/deploy/airflow" && tar -cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md skein_provider) |
		tar -xf - -C "$tmp/src"
	rm -rf "$venv/wheels"
	"$venv/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation -w "$venv/wheels" "$tmp/src" >&2
	rm -rf "$tmp"
	"$venv/bin/python" -m pip uninstall --quiet -y airflow-provider-skein apache-airflow-providers-skein >&2 2>/dev/null || true
	# With its dependencies checked (the pins satisfy them: nothing is fetched).
	"$venv/bin/python" -m pip install --quiet "$venv"/wheels/airflow_provider_skein-*.whl >&2
}

case "${1:-start}" in
start)
	py=${SKEIN_VENV_PYTHON:-python3}
	want=$(want_stamp)
	if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
		&& "$venv/bin/python" -c 'import airflow, pytest, cloudpickle' 2>/dev/null; then
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
		echo "$want" >"$stamp"
		rm -f "$venv/.skein-provider-stamp"
		log "installed in $(( $(date +%s) - start )) s"
	fi
	pwant=$(provider_stamp)
	if [ "$(cat "$venv/.skein-provider-stamp" 2>/dev/null)" != "$pwant" ] \
		|| ! (cd /tmp && "$venv/bin/python" -c 'import skein_provider' 2>/dev/null); then
		log "building and installing the provider's wheel"
		install_provider
		"$venv/bin/python" -m pip check >&2 || { log "pip check failed"; exit 1; }
		echo "$pwant" >"$venv/.skein-provider-stamp"
	fi
	echo "export SKEIN_TEST_VENV=$venv"
	echo "export SKEIN_TEST_PYTHON=$venv/bin/python"
	echo "export SKEIN_TEST_PROVIDER_WHEEL=$(ls "$venv"/wheels/airflow_provider_skein-*.whl)"
	;;
stop)
	;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
