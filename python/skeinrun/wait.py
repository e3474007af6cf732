"""Lithops' wait modes (lithops/wait.py): return_when is a percentage of the
futures done; ALWAYS returns at once, ANY_COMPLETED when one is done."""

ALWAYS = 0
ANY_COMPLETED = -1
ALL_COMPLETED = 100
THREADPOOL_SIZE = 64
WAIT_DUR_SEC = 1
