"""Apache Airflow provider for Skein.

Airflow finds it through the ``apache_airflow_provider`` entry point, which
returns get_provider_info().
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    return {
        "package-name": "apache-airflow-providers-skein",
        "name": "Skein",
        "description": "Map, map-reduce and single calls of Python functions on Skein, "
        "the successor of the Lithops / IBM-PyWren Airflow plugin.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Skein",
                "external-doc-url": "https://github.com/skeinrun/skein/blob/main/docs/airflow.md",
                "tags": ["software"],
            }
        ],
        "operators": [{"integration-name": "Skein", "python-modules": ["skein_provider.operators.skein"]}],
        "sensors": [{"integration-name": "Skein", "python-modules": ["skein_provider.sensors.skein"]}],
        "hooks": [{"integration-name": "Skein", "python-modules": ["skein_provider.hooks.skein"]}],
        "triggers": [{"integration-name": "Skein", "python-modules": ["skein_provider.triggers.skein"]}],
        "connection-types": [
            {"hook-class-name": "skein_provider.hooks.skein.SkeinHook", "connection-type": "skein"}
        ],
    }
