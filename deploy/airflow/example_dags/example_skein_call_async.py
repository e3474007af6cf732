"""The seeds' call-async examples: add(1, 3) -> 4, then add(4, <that 4>) -> 8
(the second call takes y from the first task through data_from_task)."""

from datetime import datetime

from airflow.sdk import DAG
from my_functions import add

from skein_provider.operators.skein import SkeinCallAsyncOperator

with DAG(dag_id="example_skein_call_async", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["skein", "example"]) as dag:
    add_task_1 = SkeinCallAsyncOperator(
        task_id="add_task_1",
        func=add,
        data={"x": 1, "y": 3},
    )  # returns 4

    add_task_2 = SkeinCallAsyncOperator(
        task_id="add_task_2",
        func=add,
        data={"x": 4},
        data_from_task={"y": "add_task_1"},
    )  # returns 8

    add_task_1 >> add_task_2
