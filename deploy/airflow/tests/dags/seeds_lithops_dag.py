"""The seeds' README examples (the Lithops / IBM-PyWren plugin), written the way
that plugin's users wrote them: functions defined in the DAG file, `dag=dag`,
the old class and parameter names (reduce_funtion, iterdata_form_task and
their typos), data_from_task, a Lithops config dict, reducer_one_per_object over
objects read through Lithops' `obj`, and a lambda. Only the import of the
operators changed (it was `from airflow.operators.lithops_airflow_plugin import ...`).

Results: add_task_1 4, add_task_2 8, map_task [2, 3, 4], map_from_task [12, 13, 14],
mapreduce_task 8 (the seeds' mult_array doubles once per result: 2**3; the seeds'
"18" was wrong), wordcount_per_book [300, 500, 700], square_map [1, 4, 9].
"""

import os
from datetime import datetime

from airflow import DAG

from skein_provider.operators import LithopsCallAsyncOperator, LithopsMapOperator, LithopsMapReduceOperator


def add(x, y):
    return x + y


def mult_array(results):
    result = 1
    for n in results:
        result *= 2
    return result


def count_words(obj):
    data = obj.data_stream.read()
    return len(data.split())


def sum_counts(results):
    return sum(results)


BOOKS = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", "example_dags", "data", "books")

default_args = {
    'owner': 'airflow',
    'start_date': datetime(2024, 1, 1),
}

dag = DAG(
    dag_id='seeds_lithops',
    default_args=default_args,
    schedule=None,
    catchup=False,
)

add_task_1 = LithopsCallAsyncOperator(
    task_id='add_task_1',
    func=add,
    data={'x': 1, 'y': 3},
    dag=dag,
)

add_task_2 = LithopsCallAsyncOperator(
    task_id='add_task_2',
    func=add,
    data={'x': 4},
    data_from_task={'y': 'add_task_1'},
    dag=dag,
)

map_task = LithopsMapOperator(
    task_id='map_task',
    map_function=add,
    map_iterdata=[1, 2, 3],
    extra_params={'y': 1},
    lithops_config={'lithops': {'backend': 'localhost', 'storage': 'localhost', 'workers': 2}},
    dag=dag,
)

map_from_task = LithopsMapOperator(
    task_id='map_from_task',
    map_function=add,
    map_iterdata=[],
    iterdata_form_task='map_task',
    extra_params={'y': 10},
    dag=dag,
)

mapreduce_task = LithopsMapReduceOperator(
    task_id='mapreduce_task',
    map_function=add,
    reduce_funtion=mult_array,
    map_iterdata=[1, 2, 3],
    extra_params={'y': 1},
    dag=dag,
)

wordcount_per_book = LithopsMapReduceOperator(
    task_id='wordcount_per_book',
    map_function=count_words,
    map_iterdata=['local://' + os.path.normpath(BOOKS) + '/'],
    chunk_n=2,
    reduce_function=sum_counts,
    reducer_one_per_object=True,
    dag=dag,
)

square_map = LithopsMapOperator(
    task_id='square_map',
    map_function=lambda x: x * x,
    map_iterdata=[1, 2, 3],
    dag=dag,
)

add_task_1 >> add_task_2
map_task >> map_from_task
