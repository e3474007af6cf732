"""``from skein_provider.hooks import SkeinHook``."""

from skein_provider.hooks.skein import (
    SkeinBusError,
    SkeinCancelledError,
    SkeinError,
    SkeinHook,
    SkeinJobFailedError,
    SkeinTimeoutError,
    SkeinUsageError,
)

__all__ = [
    "SkeinHook",
    "SkeinError",
    "SkeinUsageError",
    "SkeinJobFailedError",
    "SkeinTimeoutError",
    "SkeinBusError",
    "SkeinCancelledError",
]
