"""skeinrun against Lithops localhost, side by side, from Python.

    python bench.py --engine skeinrun|lithops --case map10|map100|map1000|mapreduce100|jobs100|map10000

Runs one case in this process and prints one JSON line: the wall time of
the first job from a new executor (start-up included), then of the same job
again on that executor (warm), and for jobs100 the time of 100 successive
one-call jobs from one executor (after one job to warm it up). run.sh runs
every case of both engines in fresh processes, each under a time limit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import benchfns

CASES = {"map10": 10, "map100": 100, "map1000": 1000, "map10000": 10000, "mapreduce100": 100, "jobs100": 100}


def executor(engine: str):
    if engine == "skeinrun":
        import skeinrun
        return skeinrun.FunctionExecutor()
    import lithops
    # The runtime is this venv's Python (Lithops' default, `python` on PATH, lacks lithops).
    return lithops.FunctionExecutor(backend="localhost", storage="localhost", log_level=None, runtime=sys.executable)


def one(fexec, case: str, n: int):
    if case.startswith("mapreduce"):
        fexec.map_reduce(benchfns.noop, range(n), benchfns.total)
        r = fexec.get_result()
        assert r == n * (n - 1) // 2, r
    else:
        fexec.map(benchfns.noop, range(n))
        r = fexec.get_result()
        assert list(r) == list(range(n)), r[:5]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=["skeinrun", "lithops"])
    ap.add_argument("--case", required=True, choices=sorted(CASES))
    a = ap.parse_args()
    n = CASES[a.case]
    out = {"engine": a.engine, "case": a.case}
    t0 = time.perf_counter()
    fexec = executor(a.engine)
    if a.case == "jobs100":
        fexec.call_async(benchfns.noop, 0)
        fexec.get_result()
        out["first_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(n):
            fexec.call_async(benchfns.noop, i)
            assert fexec.get_result() == i
        out["total_s"] = time.perf_counter() - t1
        out["per_job_ms"] = out["total_s"] / n * 1000
    else:
        one(fexec, a.case, n)
        out["first_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        try:
            one(fexec, a.case, n)
            out["again_s"] = time.perf_counter() - t1
        except Exception as e:  # Lithops fails some second runs; keep the first
            out["again_failed"] = f"{type(e).__name__}: {e}"[:160]
    if hasattr(fexec, "__exit__"):
        fexec.__exit__(None, None, None)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
