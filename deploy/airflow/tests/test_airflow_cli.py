"""The provider as Airflow sees it, through Airflow's own CLI and the API behind
the connection form: a third-party provider (distribution airflow-provider-skein,
classes under skein_provider), installed from its wheel, that `airflow providers
list|hooks|behaviours|widgets|triggers` and `airflow connections` show without a
warning or an import error."""

import glob
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

PROVIDER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What Airflow prints when it cannot use a provider's class.
BAD = ("Error when importing hook", "Coherence check failed", "Exception when importing",
       "Failed to add field behaviour", "is not fully initialized", "Inconsistency!")


def airflow(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    for line in (r.stdout + r.stderr).splitlines():
        assert not any(b in line for b in BAD), f"airflow {' '.join(args)}: {line}"
    return r


def as_json(r):
    return json.loads(r.stdout[r.stdout.index("["):])


def test_providers_list_hooks_behaviours_widgets_and_triggers_show_skein_cleanly():
    providers = {p["package_name"]: p for p in as_json(airflow("providers", "list", "-o", "json"))}
    assert "airflow-provider-skein" in providers, providers.keys()
    assert "apache-airflow-providers-skein" not in providers
    assert providers["airflow-provider-skein"]["version"] == "0.1.0"

    hooks = [h for h in as_json(airflow("providers", "hooks", "-o", "json")) if h.get("connection_type") == "skein"]
    assert hooks == [{"connection_type": "skein", "class": "skein_provider.hooks.skein.SkeinHook",
                      "conn_id_attribute_name": "skein_conn_id", "package_name": "airflow-provider-skein",
                      "hook_name": "Skein"}]

    behaviours = [b["field_behaviours"] for b in as_json(airflow("providers", "behaviours", "-o", "json"))]
    assert "skein" in behaviours

    widgets = {w["connection_parameter_name"]: w for w in as_json(airflow("providers", "widgets", "-o", "json"))
               if w["package_name"] == "airflow-provider-skein"}
    assert {"extra__skein__config", "extra__skein__submit_path", "extra__skein__storage_endpoint",
            "extra__skein__storage_secret_key"} <= set(widgets)

    triggers = as_json(airflow("providers", "triggers", "-o", "json"))
    assert any("skein_provider.triggers.skein" in json.dumps(t) for t in triggers)


def test_connection_form_metadata_has_the_skein_fields():
    """What the UI's connection form asks the API server for (/ui/connections/hook_meta)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "skein"]
    meta = meta.model_dump()
    assert meta["hook_name"] == "Skein"
    std = meta["standard_fields"]
    assert std["host"]["title"].startswith("Bus URL") and std["host"]["placeholder"].startswith("nats://")
    assert std["url_schema"]["hidden"] is True
    assert std["login"]["title"] == "Bus user" and std["password"]["title"] == "Bus password"
    extra = meta["extra_fields"]
    assert extra["storage_secret_key"]["schema"]["format"] == "password"
    assert extra["config"]["schema"]["title"] == "Skein config file"


def test_connections_cli_stores_a_skein_connection_the_hook_reads(airflow_db):
    extra = {"storage_endpoint": "http://127.0.0.1:7070", "storage_secret_key": "cli-secret", "config": "/etc/skein.yaml"}
    airflow("connections", "delete", "skein_cli", check=False)
    airflow("connections", "add", "skein_cli", "--conn-type", "skein", "--conn-host", "nats://10.0.0.5:4222",
            "--conn-login", "alice", "--conn-password", "pw", "--conn-extra", json.dumps(extra))
    got = as_json(airflow("connections", "get", "skein_cli", "-o", "json"))[0]
    assert got["conn_type"] == "skein" and got["host"] == "nats://10.0.0.5:4222"
    listed = {c["conn_id"]: c for c in as_json(airflow("connections", "list", "-o", "json"))}
    assert listed["skein_cli"]["conn_type"] == "skein"

    from skein_provider.hooks import SkeinHook

    def hook_env():
        # Outside a task the SDK cannot reach the metadata DB: read the stored
        # connection as the API server would and hand it to the hook.
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            conn = session.query(Connection).filter(Connection.conn_id == "skein_cli").one()
            session.expunge(conn)
        return SkeinHook(skein_conn_id="skein_cli", submit_path=sys.executable)._settings_from(conn).env

    env = hook_env()
    assert env == {"SKEIN_BUS": "nats://alice:pw@10.0.0.5:4222", "SKEIN_CONFIG": "/etc/skein.yaml",
                   "SKEIN_STORAGE_ENDPOINT": "http://127.0.0.1:7070", "SKEIN_STORAGE_SECRET_KEY": "cli-secret"}
    # The form's own spelling of the same fields (extra__skein__<name>) reads the same.
    airflow("connections", "delete", "skein_cli")
    form = {"extra__skein__" + k: v for k, v in extra.items()}
    airflow("connections", "add", "skein_cli", "--conn-type", "skein", "--conn-extra", json.dumps(form))
    env = hook_env()
    assert env == {"SKEIN_CONFIG": "/etc/skein.yaml", "SKEIN_STORAGE_ENDPOINT": "http://127.0.0.1:7070",
                   "SKEIN_STORAGE_SECRET_KEY": "cli-secret"}


def test_the_provider_is_installed_from_its_wheel_not_from_the_checkout():
    import skein_provider

    dist = importlib.metadata.distribution("airflow-provider-skein")
    assert not os.path.realpath(skein_provider.__file__).startswith(os.path.realpath(PROVIDER_DIR) + os.sep), \
        skein_provider.__file__
    assert dist.read_text("direct_url.json") is None or '"editable": true' not in dist.read_text("direct_url.json")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("apache-airflow-providers-skein")
    # Building the wheel left nothing in the checkout.
    assert glob.glob(os.path.join(PROVIDER_DIR, "*.egg-info")) == []
    assert not os.path.exists(os.path.join(PROVIDER_DIR, "build"))
    wheel = os.environ.get("SKEIN_TEST_PROVIDER_WHEEL")
    if wheel:
        assert os.path.basename(wheel).startswith("airflow_provider_skein-0.1.0-py3-none-any")


def test_operators_sensors_hooks_and_triggers_import_from_their_packages():
    from skein_provider.hooks import SkeinHook
    from skein_provider.operators import (
        LithopsMapOperator,
        SkeinCallAsyncOperator,
        SkeinMapOperator,
        SkeinMapReduceOperator,
    )
    from skein_provider.operators.skein import SkeinMapOperator as direct
    from skein_provider.sensors import SkeinJobSensor
    from skein_provider.triggers import SkeinJobTrigger

    assert SkeinMapOperator is direct and LithopsMapOperator is SkeinMapOperator
    assert all((SkeinCallAsyncOperator, SkeinMapReduceOperator, SkeinHook, SkeinJobSensor, SkeinJobTrigger))
