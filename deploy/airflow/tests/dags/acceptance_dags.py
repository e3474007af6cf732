"""DAGs of the acceptance tests' error cases (run against the real submit)."""

from airflow.sdk import DAG
from my_functions import boom, slow_add

from skein_provider.operators.skein import SkeinCallAsyncOperator, SkeinMapOperator

with DAG(dag_id="acceptance_remote_error", schedule=None) as remote_error:
    SkeinMapOperator(task_id="boom_map", map_function=boom, map_iterdata=[1, 2], function_retries=0)

with DAG(dag_id="acceptance_timeout", schedule=None) as timeout:
    SkeinCallAsyncOperator(task_id="too_slow", func=slow_add, data={"x": 1, "y": 1, "seconds": 30}, timeout=2,
                           function_retries=0)
