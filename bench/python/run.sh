#!/usr/bin/env bash
# skeinrun against Lithops localhost, side by side in one run: a venv of the
# benchmark's own (.cache/bench-python-venv) with Lithops from pip and the
# skeinrun wheel built from this checkout, then every case of bench.py for
# both engines, each in a fresh process under a time limit (a case that
# fails or runs out of time is reported as such). Results: JSON lines on
# stdout, and a table on stderr.
#
#   bash bench/python/run.sh [CASE...]     # default: map10 map100 map1000 mapreduce100 jobs100 map10000
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)
venv=${SKEIN_BENCH_VENV:-$root/.cache/bench-python-venv}
limit=${SKEIN_BENCH_LIMIT:-300}
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(map10 map100 map1000 mapreduce100 jobs100 map10000)

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import lithops, cloudpickle' 2>/dev/null; then
	echo "== making $venv with lithops" >&2
	python3 -m venv "$venv" >&2
	"$venv/bin/python" -m pip install -q lithops cloudpickle >&2
fi
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"$venv/bin/python" "$root/python/skeinrun_build.py" "$dist" >&2
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$dist"/skeinrun-*.whl >&2
echo "== lithops $("$venv/bin/python" -c 'import lithops; print(lithops.__version__)'), skeinrun $("$venv/bin/python" -c 'import skeinrun; print(skeinrun.__version__)'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for c in "${cases[@]}"; do
	for e in skeinrun lithops; do
		if [ "$e" = lithops ] && [ "$c" = map10000 ]; then continue; fi
		t0=$(date +%s.%N)
		if out=$(cd "$here" && timeout "$limit" "$venv/bin/python" bench.py --engine "$e" --case "$c" 2>"$dist/$e-$c.err"); then
			echo "$out" | grep '^{' # Lithops prints blank lines on stdout
		else
			rc=$?
			why=$({ grep -v '^\s*$' "$dist/$e-$c.err" || true; } | tail -1 | cut -c1-160 | sed 's/"/\\"/g')
			[ $rc -eq 124 ] && why="no result within ${limit}s"
			printf '{"engine": "%s", "case": "%s", "failed": "%s", "after_s": %.1f}\n' "$e" "$c" "$why" \
				"$(python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(date +%s.%N)" "$t0")"
		fi
	done
done
