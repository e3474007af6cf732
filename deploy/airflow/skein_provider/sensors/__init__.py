"""``from skein_provider.sensors import SkeinJobSensor``."""

from skein_provider.sensors.skein import SkeinJobSensor

__all__ = ["SkeinJobSensor"]
