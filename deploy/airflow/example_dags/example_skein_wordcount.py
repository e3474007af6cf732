"""Word count over objects: a map over every object under a local:/// directory,
each object split into chunk_n chunks (aligned on newlines), counted by the
wordcount built-in and summed by the sum built-in. The directory is a param
(default: the small books shipped next to this file)."""

import os
from datetime import datetime

from airflow.sdk import DAG, Param

from skein_provider.operators.skein import SkeinMapReduceOperator

BOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "books")

with DAG(dag_id="example_skein_wordcount", schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         params={"books": Param(BOOKS, type="string")}, tags=["skein", "example"]) as dag:
    wordcount = SkeinMapReduceOperator(
        task_id="wordcount",
        map_function="wordcount",
        map_iterdata=["local://{{ params.books }}/"],
        chunk_n=4,
        reduce_function="sum",
    )  # returns the number of words in all the books
