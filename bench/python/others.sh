#!/usr/bin/env bash
# 10,000 Python no-op tasks: skeinrun against Ray, Dask's LocalCluster and
# Celery on RabbitMQ (2 workers each), side by side in one run, each engine
# in a fresh process under a time limit. A venv of the benchmark's own
# (.cache/bench-others-venv: ray, dask[distributed], celery from pip, and the
# skeinrun wheel built from this checkout). Celery needs a RabbitMQ:
# SKEIN_BENCH_AMQP_URL (or SKEIN_TEST_AMQP_URL). Results: JSON lines on
# stdout.
#
#   bash bench/python/others.sh [ENGINE...]     # default: skeinrun ray dask celery
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)
venv=${SKEIN_BENCH_OTHERS_VENV:-$root/.cache/bench-others-venv}
limit=${SKEIN_BENCH_LIMIT:-600}
tasks=${SKEIN_BENCH_TASKS:-10000}
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(skeinrun ray dask celery)

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import ray, dask.distributed, celery, cloudpickle' 2>/dev/null; then
	echo "== making $venv with ray, dask and celery" >&2
	python3 -m venv "$venv" >&2
	"$venv/bin/python" -m pip install -q "ray[default]" "dask[distributed]" celery cloudpickle >&2
fi
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
"$venv/bin/python" "$root/python/skeinrun_build.py" "$dist" >&2
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$dist"/skeinrun-*.whl >&2
echo "== $("$venv/bin/python" -c 'import ray, dask, celery, skeinrun; print(f"ray {ray.__version__}, dask {dask.__version__}, celery {celery.__version__}, skeinrun {skeinrun.__version__}")'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for e in "${engines[@]}"; do
	if out=$(cd "$here" && timeout "$limit" "$venv/bin/python" others.py --engine "$e" --tasks "$tasks" 2>"$dist/$e.err"); then
		echo "$out" | grep '^{'
	else
		rc=$?
		why=$({ grep -v '^\s*$' "$dist/$e.err" || true; } | tail -1 | cut -c1-160 | sed 's/"/\\"/g')
		[ $rc -eq 124 ] && why="no result within ${limit}s"
		printf '{"engine": "%s", "failed": "%s"}\n' "$e" "$why"
	fi
done
