"""include_modules as the old plugin's users wrote it: module names and paths
relative to this file's folder, which is not on the Python path (nor the
worker's current directory)."""

from airflow.sdk import DAG

from skein_provider.operators import SkeinCallAsyncOperator, SkeinMapOperator

with DAG(dag_id="acceptance_include_modules", schedule=None) as include_modules:
    SkeinMapOperator(task_id="by_name", map_function="py:my_helpers:triple", map_iterdata=[1, 2, 3],
                     include_modules=["my_helpers"])  # [3, 6, 9]
    SkeinMapOperator(task_id="by_file_name", map_function="py:my_helpers:triple", map_iterdata=[5],
                     include_modules=["my_helpers.py"])  # [15]
    SkeinMapOperator(task_id="by_relative_path", map_function="py:more_helpers:negate", map_iterdata=[1, 2],
                     include_modules=["lib/more_helpers.py"])  # [-1, -2]
    SkeinCallAsyncOperator(task_id="by_dotted_name", func="py:pkg_helpers.sub:square", data={"x": 4},
                           include_modules=["pkg_helpers.sub"])  # 16
