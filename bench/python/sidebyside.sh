#!/usr/bin/env bash
# skeinrun of another commit against this checkout's, side by side in one
# run: both builds' submit binaries and skeinrun packages (the package from
# its source directory on PYTHONPATH, the binary through SKEIN_SUBMIT), every
# case of bench.py for each, alternating build by build and case by case,
# ROUNDS times, each in a fresh process. JSON lines on stdout, one per run,
# then a table of medians on stderr.
#
#   bash bench/python/sidebyside.sh [REF] [CASE...]   # REF default main; ROUNDS=3
set -euo pipefail
cd "$(dirname "$0")"
here=$(pwd)
root=$(cd ../.. && pwd)
ref=${1:-main}
shift || true
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(map10 map100 map1000 mapreduce100 jobs100 map10000)
rounds=${ROUNDS:-3}
limit=${SKEIN_BENCH_LIMIT:-300}
venv=${SKEIN_BENCH_VENV:-$root/.cache/bench-python-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import cloudpickle' 2>/dev/null; then
	python3 -m venv "$venv" >&2
	"$venv/bin/python" -m pip install -q cloudpickle >&2
fi
tmp=$(mktemp -d)
cleanup() {
	git -C "$root" worktree remove --force "$tmp/ref" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
git -C "$root" worktree add --detach "$tmp/ref" "$ref" >&2
(cd "$tmp/ref" && go build -o "$tmp/submit-ref" ./python/cmd/skeinrun-submit) >&2
(cd "$root" && go build -o "$tmp/submit-this" ./python/cmd/skeinrun-submit) >&2
echo "== $ref ($(git -C "$root" rev-parse --short "$ref")) against $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet || echo +changes), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

for r in $(seq "$rounds"); do
	for c in "${cases[@]}"; do
		for b in ref this; do
			if [ $b = ref ]; then src=$tmp/ref/python; else src=$root/python; fi
			if out=$(cd "$here" && SKEIN_SUBMIT=$tmp/submit-$b PYTHONPATH=$src timeout "$limit" \
				"$venv/bin/python" bench.py --engine skeinrun --case "$c" 2>"$tmp/err"); then
				printf '{"build": "%s", "round": %d, "load": %s, "run": %s}\n' "$b" "$r" "$(cut -d' ' -f1 /proc/loadavg)" "$out"
			else
				printf '{"build": "%s", "round": %d, "case": "%s", "failed": "%s"}\n' "$b" "$r" "$c" \
					"$(tail -1 "$tmp/err" | cut -c1-160 | sed 's/"/\\"/g')"
			fi
		done
	done
done | tee "$tmp/out.jsonl"
python3 - "$tmp/out.jsonl" "$ref" >&2 <<'EOF'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "run" in r:
        for k in ("first_s", "again_s", "per_job_ms"):
            if k in r["run"]:
                runs[(r["run"]["case"], k, r["build"])].append(r["run"][k])
print(f"{'case':<14} {'measure':<11} {sys.argv[2] + ' median':>14} {'this median':>12}")
for case, k in sorted({(c, k) for c, k, _ in runs}):
    med = [statistics.median(runs[(case, k, b)]) if runs[(case, k, b)] else float("nan") for b in ("ref", "this")]
    print(f"{case:<14} {k:<11} {med[0]:>14.3f} {med[1]:>12.3f}")
EOF
