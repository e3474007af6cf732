"""DAGs of the acceptance tests' error cases (run against the real submit)."""

from airflow.sdk import DAG
from my_functions import boom, slow_add

from skein_provider.operators.skein import SkeinCallAsyncOperator, SkeinMapOperator

with DAG(dag_id="acceptance_remote_error", schedule=None) as remote_error:
    SkeinMapOperator(task_id="boom_map", map_function=boom, map_iterdata=[1, 2], function_retries=0)

with DAG(dag_id="acceptance_timeout", schedule=None) as timeout:
    SkeinCallAsyncOperator(task_id="too_slow", func=slow_add, data={"x": 1, "y": 1, "seconds": 30}, timeout=2,
                           function_retries=0)


# The same shapes as the example DAGs with the runtime's Go built-ins, so that the
# Airflow side is exercised against the real binary with or without a Python host.
from airflow.sdk import task  # noqa: E402

from skein_provider.operators.skein import SkeinMapReduceOperator  # noqa: E402
from skein_provider.sensors.skein import SkeinJobSensor  # noqa: E402

with DAG(dag_id="acceptance_builtins", schedule=None) as builtins:
    b_add_1 = SkeinCallAsyncOperator(task_id="add_task_1", func="add", data={"x": 1, "y": 3})
    b_add_2 = SkeinCallAsyncOperator(task_id="add_task_2", func="add", data={"x": 4}, data_from_task={"y": "add_task_1"})
    b_add_1 >> b_add_2
    SkeinMapOperator(task_id="map_task", map_function="add", map_iterdata=[1, 2, 3], extra_params={"y": 1})

    @task
    def gen_list():
        return [10, 20, 30]

    gen_list() >> SkeinMapOperator(task_id="map_from_task", map_function="add",
                                   iterdata_from_task={"x": "gen_list"}, extra_params={"y": 1})
    SkeinMapReduceOperator(task_id="mapreduce_task", map_function="add", reduce_function="product",
                           map_iterdata=[1, 2, 3], extra_params={"y": 1})

with DAG(dag_id="acceptance_builtin_fail", schedule=None) as builtin_fail:
    SkeinMapOperator(task_id="fail_map", map_function="fail", map_iterdata=["no luck"], function_retries=0)

with DAG(dag_id="acceptance_builtin_timeout", schedule=None) as builtin_timeout:
    SkeinCallAsyncOperator(task_id="too_slow", func="sleep", data={"x": 30}, timeout=2, function_retries=0)

with DAG(dag_id="acceptance_builtin_deferrable", schedule=None) as builtin_deferrable:
    SkeinCallAsyncOperator(task_id="slow_add_deferred", func="sleep", data={"x": 3, "value": 5}, deferrable=True)
    no_wait = SkeinMapOperator(task_id="submit_no_wait", map_function="add", map_iterdata=[1, 2, 3],
                               extra_params={"y": 1}, wait_for_result=False)
    no_wait >> SkeinJobSensor(task_id="wait_for_job", job_id_from_task="submit_no_wait", deferrable=True)

with DAG(dag_id="acceptance_builtin_task_timeout", schedule=None) as builtin_task_timeout:
    # The job may take 120 s, one call only 2 s: the call's limit fails the task.
    SkeinCallAsyncOperator(task_id="too_slow_call", func="sleep", data={"x": 30}, timeout=120, task_timeout=2,
                           function_retries=0)
