"""The executor's ``config`` dict (taken from deploy/airflow/skein_provider/config.py): a Skein config, or a Lithops one translated.

A Skein config dict has the keys of Skein's config file (``bus``, ``pool``, ``python``,
``hosts``, ``run_as``, ``pass_env``, ``storage``). A Lithops config dict is translated
where its meaning carries over:

* ``rabbitmq.amqp_url`` -> ``bus`` (Skein runs on RabbitMQ);
* the storage section that ``lithops.storage`` names (or the only one present):
  ``ibm_cos``, ``aws_s3`` (with ``aws`` for the keys), ``minio`` or ``ceph``: endpoint,
  region, keys, and ``storage_bucket`` -> Skein's artifacts bucket
  (``cos://BUCKET/skein/`` or ``s3://BUCKET/skein/``); ``localhost`` storage is Skein's
  default;
* ``lithops.workers`` or ``localhost.worker_processes`` -> ``submit --workers`` (the
  embedded mode's slots; on a bus the runtimes' slots decide);
* ``lithops.execution_timeout`` -> the default of ``task_timeout``; ``lithops.log_level``
  -> the default of ``log_level``;
* ``lithops.backend`` / ``mode`` ``localhost`` and ``monitoring`` / ``rabbitmq_monitor``
  are accepted (Skein follows every job through events on its bus).

Anything else is refused when the executor is made, with an error naming every such key.
Values are never logged: describe() names where each setting came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit



SKEIN_KEYS = ("bus", "pool", "python", "hosts", "run_as", "pass_env", "storage")
SKEIN_STORAGE_KEYS = (
    "local_root", "artifacts", "create_bucket", "inline_limit", "http_timeout", "endpoint", "region",
    "path_style", "access_key", "secret_key", "api_key", "service_instance_id", "iam_endpoint",
)
_MAIN = ("lithops", "pywren", "cloudbutton")
_STORAGES = ("ibm_cos", "aws_s3", "minio", "ceph")
LITHOPS_SECTIONS = (*_MAIN, "rabbitmq", *_STORAGES, "aws", "ibm", "localhost")

# Lithops compute backends and modes: Skein runs functions on its own runtimes.
_COMPUTE = (
    "ibm_cf", "code_engine", "aws_lambda", "aws_batch", "gcp_functions", "gcp_cloudrun", "azure_functions",
    "azure_containers", "aliyun_fc", "oracle_f", "k8s", "knative", "openwhisk", "singularity", "serverless",
    "standalone", "ibm_vpc", "aws_ec2", "azure_vms", "vm",
)
_SECRET_HINTS = ("secret", "key", "password", "token", "amqp_url")


class ConfigError(ValueError):
    """A config dict with a key that has no meaning in Skein, or a bad value."""


@dataclass
class Translated:
    """A config dict as Skein takes it."""

    config: dict[str, Any]  # the content of Skein's config file
    workers: int | None = None
    task_timeout: float | None = None
    log_level: str | None = None
    sources: list[str] = field(default_factory=list)  # "bus <- rabbitmq.amqp_url", ... (no values)
    secrets: list[str] = field(default_factory=list)  # values to mask in logs

    def describe(self) -> str:
        return "; ".join(self.sources) or "nothing to translate"


def _why(key: str) -> str:
    if key in _COMPUTE:
        return "a Lithops compute backend; Skein runs functions on its own runtime processes on the bus"
    return "not a Skein or Lithops setting Skein knows"


def translate(cfg: Any, param: str = "config") -> Translated:
    """Translate cfg (the operator argument named param), or raise ConfigError
    naming every key that has no meaning in Skein."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{param} must be a dict (or a path to a Skein config file), not {type(cfg).__name__}")
    bad: list[str] = []
    for k in cfg:
        if k not in SKEIN_KEYS and k not in LITHOPS_SECTIONS:
            bad.append(f"{k!r} ({_why(str(k))})")
    t = Translated(config={})
    out = t.config
    for k in SKEIN_KEYS:
        if k in cfg:
            out[k] = cfg[k]
            t.sources.append(f"{k} <- {k}")
    if isinstance(out.get("storage"), dict):
        unknown = [k for k in out["storage"] if k not in SKEIN_STORAGE_KEYS]
        if unknown:
            raise ConfigError(f"{param}: storage: unknown setting(s) {', '.join(map(repr, unknown))} "
                              f"(known: {', '.join(SKEIN_STORAGE_KEYS)})")
        out["storage"] = {k: _str(v) for k, v in out["storage"].items()}
        for k, v in out["storage"].items():
            if any(h in k for h in _SECRET_HINTS):
                t.secrets.append(v)
    elif "storage" in out:
        raise ConfigError(f"{param}: storage must be a dict of Skein storage settings")
    if any(k in cfg for k in LITHOPS_SECTIONS):
        _lithops(cfg, param, t, bad)
    if bad:
        raise ConfigError(f"{param}: {', '.join(bad)}: no meaning in Skein; remove " + ("it" if len(bad) == 1 else "them"))
    if out.get("bus"):
        bus = str(out["bus"])
        if urlsplit(bus).password:
            t.secrets.append(bus)
    return t


def _str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _section(cfg: dict, name: str, param: str, allowed: tuple[str, ...], bad: list[str]) -> dict:
    sec = cfg.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise ConfigError(f"{param}: {name} must be a dict")
    for k in sec:
        if k not in allowed:
            bad.append(f"{name}.{k}")
    return sec


def _lithops(cfg: dict, param: str, t: Translated, bad: list[str]) -> None:
    """Translate the Lithops sections of cfg into t; keys with no meaning go to bad."""
    out = t.config
    mains = [m for m in _MAIN if m in cfg]
    if len(mains) > 1:
        raise ConfigError(f"{param}: {' and '.join(mains)} are the same section under different names; keep one")
    mname = mains[0] if mains else "lithops"
    main = _section(cfg, mname, param, (
        "backend", "mode", "storage", "storage_bucket", "workers", "monitoring", "rabbitmq_monitor",
        "log_level", "execution_timeout", "data_cleaner", "retries",
    ), bad)
    for k, ok in (("backend", ("localhost",)), ("mode", ("localhost",))):
        if k in main and main[k] not in ok:
            bad.append(f"{mname}.{k}={main[k]!r} ({_why(str(main[k])) if main[k] in _COMPUTE else 'only localhost carries over'})")
    if "monitoring" in main and main["monitoring"] not in ("rabbitmq", "storage"):
        bad.append(f"{mname}.monitoring={main['monitoring']!r}")

    rabbit = _section(cfg, "rabbitmq", param, ("amqp_url",), bad)
    if rabbit.get("amqp_url"):
        if out.get("bus"):
            raise ConfigError(f"{param}: both bus and rabbitmq.amqp_url are set; keep one")
        url = str(rabbit["amqp_url"])
        if urlsplit(url).scheme not in ("amqp", "amqps"):
            raise ConfigError(f"{param}: rabbitmq.amqp_url must be an amqp:// or amqps:// URL")
        out["bus"] = url
        t.sources.append(f"bus <- rabbitmq.amqp_url ({_redact(url)})")
        t.secrets.append(url)

    # Which storage section: lithops.storage, else the only one present.
    present = [s for s in _STORAGES if s in cfg]
    sel = main.get("storage")
    if sel is None:
        if len(present) > 1:
            raise ConfigError(f"{param}: {' and '.join(present)} are both set; say which with {mname}.storage")
        sel = present[0] if present else None
    elif sel != "localhost" and sel not in _STORAGES:
        bad.append(f"{mname}.storage={sel!r} (Skein's storage is S3-compatible: ibm_cos, aws_s3, minio, ceph, or localhost)")
        sel = None
    for s in present:
        if s != sel:
            bad.append(f"{s} ({mname}.storage is {sel!r})")
    aws: dict = {}
    ibm: dict = {}
    if sel == "aws_s3":
        aws = _section(cfg, "aws", param, ("access_key_id", "secret_access_key", "region"), bad)
    elif "aws" in cfg:
        bad.append("aws (the storage is not aws_s3)")
    if sel == "ibm_cos":
        ibm = _section(cfg, "ibm", param, ("iam_api_key", "region"), bad)
    elif "ibm" in cfg:
        bad.append("ibm (the storage is not ibm_cos)")
    local = _section(cfg, "localhost", param, ("worker_processes",), bad)

    if sel in _STORAGES:
        allowed = {
            "ibm_cos": ("endpoint", "region", "storage_bucket", "access_key", "access_key_id", "secret_key",
                        "secret_access_key", "api_key", "iam_api_key", "service_instance_id"),
            "aws_s3": ("endpoint", "region", "storage_bucket", "access_key_id", "secret_access_key"),
            "minio": ("endpoint", "storage_bucket", "access_key_id", "secret_access_key"),
            "ceph": ("endpoint", "storage_bucket", "access_key_id", "secret_access_key"),
        }[sel]
        sec = _section(cfg, sel, param, allowed, bad)
        if not bad:
            _storage(sel, sec, main, aws, ibm, param, mname, t)

    workers = main.get("workers", local.get("worker_processes"))
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0:
            raise ConfigError(f"{param}: workers must be a positive integer, got {workers!r}")
        t.workers = workers
        t.sources.append(f"--workers <- {mname + '.workers' if 'workers' in main else 'localhost.worker_processes'}")
    if main.get("execution_timeout") is not None:
        v = main["execution_timeout"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"{param}: {mname}.execution_timeout must be a positive number of seconds, got {v!r}")
        t.task_timeout = float(v)
        t.sources.append(f"task_timeout <- {mname}.execution_timeout")
    if main.get("log_level"):
        lv = str(main["log_level"]).lower()
        lv = {"warning": "warn", "critical": "error"}.get(lv, lv)
        if lv not in ("debug", "info", "warn", "error"):
            raise ConfigError(f"{param}: {mname}.log_level={main['log_level']!r} is not debug, info, warning or error")
        t.log_level = lv
        t.sources.append(f"log_level <- {mname}.log_level")


def _storage(sel: str, sec: dict, main: dict, aws: dict, ibm: dict, param: str, mname: str, t: Translated) -> None:
    st: dict[str, str] = dict(t.config.get("storage") or {})
    got: list[str] = []

    def put(key: str, value: Any, src: str, secret: bool = False) -> None:
        if value in (None, ""):
            return
        if key in st:
            raise ConfigError(f"{param}: storage.{key} and {src} are both set; keep one")
        st[key] = _str(value)
        got.append(f"{key} <- {src}")
        if secret:
            t.secrets.append(st[key])

    region = sec.get("region") or (aws.get("region") if sel == "aws_s3" else ibm.get("region") if sel == "ibm_cos" else None)
    endpoint = sec.get("endpoint")
    if not endpoint and region and sel == "ibm_cos":
        endpoint = f"https://s3.{region}.cloud-object-storage.appdomain.cloud"
    if not endpoint and region and sel == "aws_s3":
        endpoint = f"https://s3.{region}.amazonaws.com"
    if not endpoint:
        raise ConfigError(f"{param}: {sel}: set endpoint" + (" or region" if sel in ("ibm_cos", "aws_s3") else ""))
    put("endpoint", endpoint, f"{sel}.endpoint" if sec.get("endpoint") else f"{sel}.region")
    put("region", region, f"{sel}.region")
    if sel in ("minio", "ceph"):
        put("path_style", True, sel)
    bucket = sec.get("storage_bucket") or main.get("storage_bucket")
    if bucket:
        scheme = "cos" if sel == "ibm_cos" else "s3"
        put("artifacts", f"{scheme}://{bucket}/skein/",
            f"{sel}.storage_bucket" if sec.get("storage_bucket") else f"{mname}.storage_bucket")
    keys = aws if sel == "aws_s3" else sec
    access = keys.get("access_key_id") or keys.get("access_key") or sec.get("access_key_id")
    secret = keys.get("secret_access_key") or keys.get("secret_key") or sec.get("secret_access_key")
    where = "aws" if sel == "aws_s3" and aws.get("access_key_id") else sel
    put("access_key", access, f"{where}.access_key_id", secret=True)
    put("secret_key", secret, f"{where}.secret_access_key", secret=True)
    if sel == "ibm_cos":
        api = sec.get("api_key") or sec.get("iam_api_key") or ibm.get("iam_api_key")
        put("api_key", api, f"{sel}.api_key" if (sec.get("api_key") or sec.get("iam_api_key")) else "ibm.iam_api_key",
            secret=True)
        put("service_instance_id", sec.get("service_instance_id"), f"{sel}.service_instance_id")
    t.config["storage"] = st
    t.sources.append(f"storage from {sel} ({', '.join(got)})")


def _redact(url: str) -> str:
    p = urlsplit(url)
    if p.password or p.username:
        host = p.hostname or ""
        if p.port:
            host += f":{p.port}"
        return urlunsplit((p.scheme, "***@" + host, p.path, "", ""))
    return url
