"""The Skein operators: ``from skein_provider.operators import SkeinMapOperator``.

The old plugins' class names (LithopsMapOperator, IbmPyWrenMapOperator, ...)
are importable from here too.
"""

from skein_provider.operators.skein import (
    CloudbuttonAsyncOperator,
    CloudbuttonCallAsyncOperator,
    CloudbuttonMapOperator,
    CloudbuttonMapReduceOperator,
    IbmCloudFunctionsCallAsyncOperator,
    IbmCloudFunctionsMapOperator,
    IbmCloudFunctionsMapReduceOperator,
    IbmPyWrenCallAsyncOperator,
    IbmPyWrenMapOperator,
    IbmPyWrenMapReduceOperator,
    LithopsCallAsyncOperator,
    LithopsMapOperator,
    LithopsMapReduceOperator,
    SkeinBaseOperator,
    SkeinCallAsyncOperator,
    SkeinMapOperator,
    SkeinMapReduceOperator,
)

__all__ = [
    "SkeinBaseOperator",
    "SkeinCallAsyncOperator",
    "SkeinMapOperator",
    "SkeinMapReduceOperator",
    "LithopsCallAsyncOperator",
    "LithopsMapOperator",
    "LithopsMapReduceOperator",
    "CloudbuttonCallAsyncOperator",
    "CloudbuttonAsyncOperator",
    "CloudbuttonMapOperator",
    "CloudbuttonMapReduceOperator",
    "IbmPyWrenCallAsyncOperator",
    "IbmPyWrenMapOperator",
    "IbmPyWrenMapReduceOperator",
    "IbmCloudFunctionsCallAsyncOperator",
    "IbmCloudFunctionsMapOperator",
    "IbmCloudFunctionsMapReduceOperator",
]
