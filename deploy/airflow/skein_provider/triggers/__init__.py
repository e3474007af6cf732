"""``from skein_provider.triggers import SkeinJobTrigger``."""

from skein_provider.triggers.skein import SkeinJobTrigger

__all__ = ["SkeinJobTrigger"]
