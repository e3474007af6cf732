"""10,000 Python no-op tasks on what Python users pick on one machine, each
with 2 workers, and on skeinrun, from Python:

    python others.py --engine skeinrun|ray|dask|celery [--n 10000]

Prints one JSON line: total_s from before the engine's start (ray.init, a
LocalCluster, Celery's worker processes, a FunctionExecutor) to the last
result, after_start_s from when it is up (for skeinrun: after its first
job, which starts the warm installation), and a second batch's again_s.
Every engine runs benchfns.noop over range(n) and the results are checked.

Celery needs a RabbitMQ broker: SKEIN_BENCH_AMQP_URL (or SKEIN_TEST_AMQP_URL);
its results come back over the same broker (the rpc:// backend). The
benchmark declares its own queue and stops its workers at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

import benchfns

WORKERS = 2


def run_skeinrun(n: int) -> dict:
    import skeinrun
    t0 = time.perf_counter()
    fexec = skeinrun.FunctionExecutor(max_workers=WORKERS)
    fexec.map(benchfns.noop, [0])
    fexec.get_result()
    t1 = time.perf_counter()
    out = {}
    for key in ("first", "again"):
        ts = time.perf_counter()
        r = fexec.map(benchfns.noop, range(n)).get_result()
        assert list(r) == list(range(n)), r[:5]
        out[key] = time.perf_counter() - ts
    fexec.__exit__(None, None, None)
    return {"total_s": t1 - t0 + out["first"], "after_start_s": out["first"], "again_s": out["again"]}


def run_ray(n: int) -> dict:
    import ray
    t0 = time.perf_counter()
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    noop = ray.remote(benchfns.noop)
    t1 = time.perf_counter()
    out = {}
    for key in ("first", "again"):
        ts = time.perf_counter()
        r = ray.get([noop.remote(i) for i in range(n)])
        assert r == list(range(n)), r[:5]
        out[key] = time.perf_counter() - ts
    ray.shutdown()
    return {"total_s": t1 - t0 + out["first"], "after_start_s": out["first"], "again_s": out["again"]}


def run_dask(n: int) -> dict:
    from dask.distributed import Client, LocalCluster
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    t1 = time.perf_counter()
    out = {}
    for key in ("first", "again"):
        ts = time.perf_counter()
        # pure=False: one task per call even for equal arguments across batches.
        r = client.gather(client.map(benchfns.noop, range(n), pure=False))
        assert r == list(range(n)), r[:5]
        out[key] = time.perf_counter() - ts
    client.close()
    cluster.close()
    return {"total_s": t1 - t0 + out["first"], "after_start_s": out["first"], "again_s": out["again"]}


def run_celery(n: int) -> dict:
    url = os.environ.get("SKEIN_BENCH_AMQP_URL") or os.environ.get("SKEIN_TEST_AMQP_URL")
    if not url:
        raise SystemExit("celery needs SKEIN_BENCH_AMQP_URL (a RabbitMQ URL)")
    queue = f"skein-bench-{uuid.uuid4().hex[:8]}"
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, SKEIN_BENCH_AMQP_URL=url, SKEIN_BENCH_CELERY_QUEUE=queue,
               PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    os.environ["SKEIN_BENCH_AMQP_URL"], os.environ["SKEIN_BENCH_CELERY_QUEUE"] = url, queue
    import benchcelery
    t0 = time.perf_counter()
    log = tempfile.TemporaryFile()
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "benchcelery", "worker", "--pool", "prefork",
                               "--concurrency", str(WORKERS), "--queues", queue, "--loglevel", "warning",
                               "--without-gossip", "--without-mingle", "--without-heartbeat"],
                              cwd=here, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        # Up when a task makes the round trip.
        benchcelery.noop.delay(0).get(timeout=120)
        t1 = time.perf_counter()
        out = {}
        from celery import group
        for key in ("first", "again"):
            ts = time.perf_counter()
            r = group(benchcelery.noop.s(i) for i in range(n)).apply_async().get(timeout=600)
            assert r == list(range(n)), r[:5]
            out[key] = time.perf_counter() - ts
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return {"total_s": t1 - t0 + out["first"], "after_start_s": out["first"], "again_s": out["again"]}


ENGINES = {"skeinrun": run_skeinrun, "ray": run_ray, "dask": run_dask, "celery": run_celery}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=sorted(ENGINES))
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    out = {"engine": a.engine, "n": a.n, "workers": WORKERS}
    out.update(ENGINES[a.engine](a.n))
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
