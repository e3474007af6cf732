"""The seeds' map example: add over [1, 2, 3] with y=1 -> [2, 3, 4]; and a map
over an upstream task's list through iterdata_from_task -> [11, 21, 31]."""

from datetime import datetime

from airflow.sdk import DAG, task
from my_functions import add

from skein_provider.operators.skein import SkeinMapOperator

with DAG(dag_id="example_skein_map", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["skein", "example"]) as dag:
    map_task = SkeinMapOperator(
        task_id="map_task",
        map_function=add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
    )  # returns [2, 3, 4]

    @task
    def gen_list():
        return [10, 20, 30]

    map_from_task = SkeinMapOperator(
        task_id="map_from_task",
        map_function=add,
        iterdata_from_task={"x": "gen_list"},
        extra_params={"y": 1},
    )  # returns [11, 21, 31]

    gen_list() >> map_from_task
