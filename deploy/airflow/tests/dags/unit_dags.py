"""DAGs of the provider's unit tests (run against a stand-in submit binary)."""

from airflow.sdk import DAG, task
from my_functions import add

from skein_provider.operators.skein import SkeinCallAsyncOperator, SkeinMapOperator

with DAG(dag_id="unit_xcom_runs", schedule=None) as xcom_runs:

    @task
    def up():
        return 10

    call = SkeinCallAsyncOperator(task_id="call", func=add, data={"x": 1}, data_from_task={"y": "up"})
    up() >> call

with DAG(dag_id="unit_templated", schedule=None, params={"n": 3}) as templated:
    SkeinMapOperator(task_id="m", map_function="add", map_iterdata="{{ range(params.n) | list }}",
                     extra_params={"y": "{{ params.n }}"})
