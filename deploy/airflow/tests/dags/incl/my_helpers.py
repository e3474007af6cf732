"""A helper module next to its DAG file (not on the Python path): shipped by
include_modules=["my_helpers"] or ["my_helpers.py"]."""


def triple(x):
    return 3 * x
