"""Apache Airflow provider for Skein.

Airflow finds it through the ``apache_airflow_provider`` entry point, which
returns get_provider_info().
"""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-provider-skein",
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
            {
                "hook-class-name": "skein_provider.hooks.skein.SkeinHook",
                "hook-name": "Skein",
                "connection-type": "skein",
                # The connection form, declared (Airflow 3.2+ reads these without
                # importing the hook; SkeinHook.get_ui_field_behaviour serves older ones).
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": dict(RELABELING),
                    "placeholders": dict(PLACEHOLDERS),
                },
            }
        ],
    }


# Extra fields of the skein connection form. The hook reads each from the
# connection's extra under its name (or Airflow's extra__skein__<name>).
CONN_FIELDS: dict = {
    "config": {"label": "Skein config file", "schema": {"type": ["string", "null"]},
               "description": "path of Skein's config file on the workers (SKEIN_CONFIG)"},
    "submit_path": {"label": "submit binary", "schema": {"type": ["string", "null"]},
                    "description": "path of the submit binary (default: SKEIN_SUBMIT, then submit on PATH)"},
    "bus_scheme": {"label": "Bus scheme", "schema": {"type": ["string", "null"], "enum": ["nats", "amqp", None]},
                   "description": "scheme for a Host without one (default nats)"},
    "storage_endpoint": {"label": "Storage endpoint", "schema": {"type": ["string", "null"]},
                         "description": "S3 / IBM COS endpoint URL (SKEIN_STORAGE_ENDPOINT)"},
    "storage_artifacts": {"label": "Artifacts bucket", "schema": {"type": ["string", "null"]},
                          "description": "where jobs keep their data, e.g. s3://bucket/skein/ (SKEIN_STORAGE_ARTIFACTS)"},
    "storage_region": {"label": "Storage region", "schema": {"type": ["string", "null"]}},
    "storage_access_key": {"label": "Storage access key", "schema": {"type": ["string", "null"]}},
    "storage_secret_key": {"label": "Storage secret key", "schema": {"type": ["string", "null"], "format": "password"}},
}

RELABELING = {"host": "Bus URL (nats://host:4222 or amqp://host:5672)", "login": "Bus user", "password": "Bus password"}

PLACEHOLDERS = {
    "host": "nats://127.0.0.1:4222 (empty: Skein's config file, then the embedded default)",
    "extra": '{"storage": {"endpoint": "http://127.0.0.1:7070", "artifacts": "s3://skein/jobs/"}}',
}
