#!/usr/bin/env bash
# The skeinrun package's tests (python/): a venv under .cache/skeinrun-venv
# with pytest and cloudpickle, the skeinrun wheel built from a clean copy of
# the checkout (what git would commit; nothing is written into the checkout)
# and installed into it, then pytest from python/tests, so that what the
# tests import is the installed wheel with its bundled submit binary. The
# NATS tests use SKEIN_TEST_NATS_URL; under CI a missing broker, Go or an
# uninstallable venv is a failure. pytest's exit code 5 (no tests) too.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
export SKEIN_TEST_DIR=${SKEIN_TEST_DIR:-$(mktemp -d /tmp/skein-test.XXXXXX)}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
venv=$root/.cache/skeinrun-venv
py=${SKEIN_VENV_PYTHON:-python3}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pytest, cloudpickle' 2>/dev/null; then
	echo "== skeinrun: making $venv" >&2
	rm -rf "$venv"
	"$py" -m venv "$venv" >&2
	"$venv/bin/python" -m pip install -q pytest cloudpickle >&2
fi

echo "== skeinrun: building the wheel from a clean copy" >&2
copy=$SKEIN_TEST_DIR/skeinrun-src
rm -rf "$copy" "$SKEIN_TEST_DIR/skeinrun-dist"
mkdir -p "$copy"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
	[ -f "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$copy"
"$venv/bin/python" "$copy/python/skeinrun_build.py" "$SKEIN_TEST_DIR/skeinrun-dist" >&2
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$SKEIN_TEST_DIR"/skeinrun-dist/skeinrun-*.whl >&2
unset SKEIN_SUBMIT SKEIN_BUS

cd python/tests
set +e
"$venv/bin/python" -m pytest -p no:cacheprovider -o addopts="" -rs -q . "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
	echo "skeinrun tests: pytest collected no tests" >&2
	exit 1
fi
exit $rc
