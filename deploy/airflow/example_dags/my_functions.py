"""Functions for the example DAGs.

They live in their own module: the Skein operators ship this module to the
runtimes (--include-modules) and call the functions there by module and name
(py:my_functions:add). Functions defined in a DAG file work too: they are
shipped by value (cloudpickle), see docs/airflow.md.
"""

import time


def add(x, y):
    return x + y


def echo(x, y):
    """The seeds' examples call this "echo" and expect x + y."""
    return x + y


def mult(results):
    """Reducer: the product of the map results ([2, 3, 4] -> 24)."""
    product = 1
    for n in results:
        product *= n
    return product


def slow_add(x, y, seconds=2):
    time.sleep(seconds)
    return x + y


def boom(x):
    """Raises, for the examples and tests of a failing function."""
    raise ValueError(f"boom: cannot handle {x!r}")


class Unpicklable:
    """A callable holding a lock: cloudpickle cannot ship it (for the tests)."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()

    def __call__(self, x):
        return x
