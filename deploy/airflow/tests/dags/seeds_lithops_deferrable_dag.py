"""The seeds' README examples as in seeds_lithops_dag.py (functions defined in the
DAG file, old names, data_from_task, iterdata_form_task, reduce_funtion, a lambda),
each with deferrable=True: the task submits, defers to the triggerer while the
functions run on the bus, and resumes to fetch the result.

Results: add_task_1 4, add_task_2 8, map_task [2, 3, 4], map_from_task [12, 13, 14],
mapreduce_task 8, square_map [1, 4, 9].
"""

import time
from datetime import datetime

from airflow import DAG

from skein_provider.operators import LithopsCallAsyncOperator, LithopsMapOperator, LithopsMapReduceOperator


def add(x, y):
    return x + y


def slow_add(x, y):
    time.sleep(2)
    return x + y


def mult_array(results):
    result = 1
    for n in results:
        result *= 2
    return result


# min_deferral: the tests' metadata DB is SQLite, whose writers wait up to 5 s
# for each other's locks, so the executor's report of a deferral can reach
# the scheduler seconds late; a trigger firing before that makes Airflow 3.3
# fail the task (see the trigger's MIN_DEFERRAL).
dag = DAG(
    dag_id='seeds_lithops_deferrable',
    default_args={'owner': 'airflow', 'start_date': datetime(2024, 1, 1), 'min_deferral': 15},
    schedule=None,
    catchup=False,
)

add_task_1 = LithopsCallAsyncOperator(
    task_id='add_task_1',
    func=slow_add,
    data={'x': 1, 'y': 3},
    deferrable=True,
    dag=dag,
)

add_task_2 = LithopsCallAsyncOperator(
    task_id='add_task_2',
    func=add,
    data={'x': 4},
    data_from_task={'y': 'add_task_1'},
    deferrable=True,
    dag=dag,
)

map_task = LithopsMapOperator(
    task_id='map_task',
    map_function=add,
    map_iterdata=[1, 2, 3],
    extra_params={'y': 1},
    deferrable=True,
    dag=dag,
)

map_from_task = LithopsMapOperator(
    task_id='map_from_task',
    map_function=add,
    map_iterdata=[],
    iterdata_form_task='map_task',
    extra_params={'y': 10},
    deferrable=True,
    dag=dag,
)

mapreduce_task = LithopsMapReduceOperator(
    task_id='mapreduce_task',
    map_function=add,
    reduce_funtion=mult_array,
    map_iterdata=[1, 2, 3],
    extra_params={'y': 1},
    deferrable=True,
    dag=dag,
)

square_map = LithopsMapOperator(
    task_id='square_map',
    map_function=lambda x: x * x,
    map_iterdata=[1, 2, 3],
    deferrable=True,
    dag=dag,
)

add_task_1 >> add_task_2
map_task >> map_from_task
