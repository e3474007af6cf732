"""skeinrun: Lithops' FunctionExecutor on Skein.

    from skeinrun import FunctionExecutor

    def double(x):
        return 2 * x

    with FunctionExecutor() as fexec:
        fexec.map(double, [1, 2, 3])
        print(fexec.get_result())  # [2, 4, 6]

The wheel carries Skein's submit binary: nothing else is needed for the
embedded default. See docs/python.md in the Skein repository.
"""

from ._version import __version__
from ._binary import submit_path
from ._remote import CloudObject, Storage, StorageNoSuchKeyError
from .config import ConfigError
from .executor import FunctionExecutor
from .future import (FunctionError, FunctionTimeoutError, FuturesList, JobError, RemoteTraceback, ResponseFuture,
                     as_completed)
from .retries import RetryingFunctionExecutor, RetryingFuture
from .wait import ALL_COMPLETED, ALWAYS, ANY_COMPLETED

LocalhostExecutor = FunctionExecutor

__all__ = [
    "ALL_COMPLETED", "ALWAYS", "ANY_COMPLETED", "CloudObject", "ConfigError", "FunctionError", "FunctionExecutor",
    "FunctionTimeoutError", "FuturesList", "JobError", "LocalhostExecutor", "RemoteTraceback", "ResponseFuture",
    "RetryingFunctionExecutor", "RetryingFuture", "Storage", "StorageNoSuchKeyError", "__version__", "as_completed",
    "submit_path",
]
