"""Airflow benchmark: a map of a trivial Python function over N elements as one
SkeinMapOperator task against the same map as Airflow dynamic task mapping
(.expand()), both with dag.test() in one process, side by side.

    bash bench/airflow/run.sh [--n 1000] [--only skein|expand]

Prints both wall times (dag.test() start to end, DAG parse excluded) and the ratio.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--only", choices=["skein", "expand"])
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="skein-bench-airflow-")
    dags = os.path.join(home, "dags")
    os.makedirs(dags)
    for f in ("bench_dags.py", "bench_functions.py"):
        os.symlink(os.path.join(HERE, f), os.path.join(dags, f))
    os.environ.update({
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": dags,
        "AIRFLOW__CORE__MAX_MAP_LENGTH": str(max(1024, args.n)),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "SKEIN_BENCH_N": str(args.n),
    })
    sys.path.insert(0, HERE)
    try:
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        from airflow import settings

        settings.configure_orm()
        import bench_dags
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        def run(dag, task_id):
            t0 = time.monotonic()
            dr = dag.test()
            took = time.monotonic() - t0
            with create_session() as s:
                row = s.scalars(XComModel.get_many(run_id=dr.run_id, dag_ids=dr.dag_id, task_ids=task_id,
                                                   key="return_value")).first()
                value = XComModel.deserialize_value(row) if row is not None else None
            if value != [x + 1 for x in range(args.n)]:
                raise SystemExit(f"{dag.dag_id}: wrong result (state {dr.state})")
            return took

        times = {}
        if args.only in (None, "skein"):
            times["skein"] = run(bench_dags.skein_map, "map")
        if args.only in (None, "expand"):
            times["expand"] = run(bench_dags.airflow_expand, "collect")
        print(f"n={args.n}")
        for k, label in (("skein", "SkeinMapOperator (one task)"), ("expand", "Airflow .expand() (dag.test)")):
            if k in times:
                print(f"{label:32s} {times[k]:8.2f} s")
        if len(times) == 2:
            print(f"{'ratio expand/skein':32s} {times['expand'] / times['skein']:8.1f}x")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
