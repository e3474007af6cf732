"""Deferrable mode and the sensor. Both need a running Skein bus (a skein
connection, SKEIN_BUS or Skein's config file): a job submitted with --no-wait
must outlive the submit process.

* slow_add_deferred: submits, defers to the triggerer while the function
  sleeps, resumes and pushes 5.
* submit_no_wait + wait_for_job: the seeds' wait_for_result=False pushes the
  job id; SkeinJobSensor (deferrable) waits for the job and pushes its result [2, 3, 4].
"""

from datetime import datetime

from airflow.sdk import DAG
from my_functions import add, slow_add

from skein_provider.operators.skein import SkeinCallAsyncOperator, SkeinMapOperator
from skein_provider.sensors.skein import SkeinJobSensor

with DAG(dag_id="example_skein_deferrable", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["skein", "example"]) as dag:
    slow_add_deferred = SkeinCallAsyncOperator(
        task_id="slow_add_deferred",
        func=slow_add,
        data={"x": 2, "y": 3, "seconds": 3},
        deferrable=True,
    )  # returns 5

    submit_no_wait = SkeinMapOperator(
        task_id="submit_no_wait",
        map_function=add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        wait_for_result=False,
    )  # returns the job id

    wait_for_job = SkeinJobSensor(
        task_id="wait_for_job",
        job_id_from_task="submit_no_wait",
        deferrable=True,
    )  # returns [2, 3, 4]

    submit_no_wait >> wait_for_job
