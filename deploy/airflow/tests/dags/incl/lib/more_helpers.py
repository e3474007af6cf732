"""Shipped by a path relative to the DAG file's folder: include_modules=["lib/more_helpers.py"]."""


def negate(x):
    return -x
