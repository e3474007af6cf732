"""10,000 Python no-op tasks on what Python users pick on one machine, side
by side with skeinrun: Ray, Dask's LocalCluster and Celery on RabbitMQ, each
with 2 workers, and skeinrun's embedded default.

    python others.py --engine skeinrun|ray|dask|celery [--tasks N] [--rounds R]

Runs in this process and prints one JSON line: start_s is the engine's
start-up (ray.init, the LocalCluster and its client, the Celery worker
ready to take tasks; skeinrun's first job includes its own), first_s the
first round of N tasks submitted and gathered, again_s the median of the
further rounds on the started engine, and total_s start-up plus the first
round. The function is benchfns.noop for every engine; the results are
checked. others.sh runs every engine in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import benchfns


def ray_engine(n: int):
    import ray
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    noop = ray.remote(benchfns.noop)
    ray.get(noop.remote(0))  # the workers are up
    start = time.perf_counter() - t0

    def run():
        return ray.get([noop.remote(i) for i in range(n)])
    return start, run, ray.shutdown


def dask_engine(n: int):
    from dask.distributed import Client, LocalCluster
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.submit(benchfns.noop, -1).result()
    start = time.perf_counter() - t0

    def run():
        # pure=False: every round runs its tasks (Dask would reuse the
        # results of equal calls).
        return client.gather(client.map(benchfns.noop, range(n), pure=False))

    def close():
        client.close()
        cluster.close()
    return start, run, close


def celery_engine(n: int):
    url = os.environ.get("SKEIN_BENCH_AMQP_URL") or os.environ.get("SKEIN_TEST_AMQP_URL")
    if not url:
        raise SystemExit("celery needs RabbitMQ: set SKEIN_BENCH_AMQP_URL (or SKEIN_TEST_AMQP_URL)")
    os.environ["SKEIN_BENCH_CELERY_BROKER"] = url.split("?")[0]
    import celerybench
    t0 = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celerybench", "worker", "--concurrency", "2",
                               "--pool", "prefork", "-Q", celerybench.QUEUE, "--loglevel", "WARNING", "--without-gossip",
                               "--without-mingle", "--without-heartbeat"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    celerybench.noop.delay(-1).get(timeout=120)  # the worker is up
    start = time.perf_counter() - t0

    def run():
        from celery import group
        return group(celerybench.noop.s(i) for i in range(n))().get(timeout=600)

    def close():
        worker.terminate()
        worker.wait(30)
    return start, run, close


def skeinrun_engine(n: int):
    import skeinrun
    fexec = skeinrun.FunctionExecutor()

    def run():
        fexec.map(benchfns.noop, range(n))
        return fexec.get_result()
    # skeinrun starts its embedded installation with the first job.
    return 0.0, run, lambda: fexec.__exit__(None, None, None)


ENGINES = {"ray": ray_engine, "dask": dask_engine, "celery": celery_engine, "skeinrun": skeinrun_engine}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True, choices=sorted(ENGINES))
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    t0 = time.perf_counter()
    start, run, close = ENGINES[a.engine](a.tasks)
    t1 = time.perf_counter()
    got = run()
    first = time.perf_counter() - t1
    assert list(got) == list(range(a.tasks)), list(got)[:5]
    again = []
    for _ in range(a.rounds - 1):
        t2 = time.perf_counter()
        got = run()
        again.append(time.perf_counter() - t2)
        assert list(got) == list(range(a.tasks))
    out = {"engine": a.engine, "tasks": a.tasks, "start_s": start, "first_s": first,
           "total_s": time.perf_counter() - t0 - sum(again)}
    if again:
        out["again_s"] = statistics.median(again)
    close()
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
