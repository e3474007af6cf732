"""The trivial function of the Airflow benchmark (shipped to the Skein runtimes)."""


def inc(x):
    return x + 1
