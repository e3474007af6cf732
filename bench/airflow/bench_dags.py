"""The two DAGs of the Airflow benchmark, N = $SKEIN_BENCH_N elements (default 1000):
one SkeinMapOperator task, and Airflow dynamic task mapping (.expand()) of the same function."""

import os

from airflow.sdk import DAG, task
from bench_functions import inc

from skein_provider.operators.skein import SkeinMapOperator

N = int(os.environ.get("SKEIN_BENCH_N", "1000"))

with DAG(dag_id="bench_skein_map", schedule=None) as skein_map:
    SkeinMapOperator(task_id="map", map_function=inc, map_iterdata=list(range(N)))

with DAG(dag_id="bench_airflow_expand", schedule=None) as airflow_expand:

    @task
    def inc_task(x):
        return inc(x)

    @task
    def collect(values):
        return list(values)

    collect(inc_task.expand(x=list(range(N))))
