"""The seeds' map-reduce example with its arithmetic fixed: add over [1, 2, 3]
with y=1 gives [2, 3, 4], and the reducer multiplies them: 24 (the seeds said
18). The same job with Go built-ins (add, product) gives 24 too."""

from datetime import datetime

from airflow.sdk import DAG
from my_functions import add, mult

from skein_provider.operators.skein import SkeinMapReduceOperator

with DAG(dag_id="example_skein_mapreduce", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["skein", "example"]) as dag:
    mapreduce_task = SkeinMapReduceOperator(
        task_id="mapreduce_task",
        map_function=add,
        reduce_function=mult,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
    )  # returns 24

    mapreduce_builtins = SkeinMapReduceOperator(
        task_id="mapreduce_builtins",
        map_function="add",
        reduce_function="product",
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
    )  # returns 24
