"""SkeinHook: runs the Skein ``submit`` binary for operators, sensors and triggers.

Where the settings come from, first match wins:

* the Airflow connection (type ``skein``, default id ``skein_default``): the bus
  URL in Host (``nats://host:4222`` or ``host`` with Port and the ``bus_scheme``
  extra), login/password as bus credentials, and in Extra (JSON)::

      {"bus": "nats://host:4222",            # instead of Host
       "config": "/etc/skein/config.yaml",   # Skein's config file (SKEIN_CONFIG)
       "submit_path": "/usr/local/bin/submit",
       "storage": {"endpoint": "http://...", "artifacts": "s3://b/skein/",
                   "access_key": "...", "secret_key": "..."},
       "env": {"ANY_VAR": "value"}}          # more environment for submit

  storage keys become ``SKEIN_STORAGE_<KEY>`` environment variables (the S3 names
  access_key_id and secret_access_key are taken for access_key and secret_key), and
  the connection form's fields (``storage_endpoint``...) land in the extra as
  ``storage_<key>``;
* what the worker's environment already has (SKEIN_BUS, SKEIN_CONFIG, SKEIN_STORAGE_*);
* Skein's own config file, then the embedded default (everything in the submit process),
  both decided by ``submit`` itself when nothing above sets a bus.

Credentials travel only in the environment of the submit process, never on
its command line, and are registered with Airflow's secrets masker; the hook
logs the command line and the *names* of the variables it set, never values.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException, AirflowNotFoundException

# Exit codes of the submit CLI.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_JOB_FAILED = 3
EXIT_TIMEOUT = 4
EXIT_BUS = 5
EXIT_CANCELLED = 6

_STDERR_TAIL_LINES = 200
_FORM_PREFIX = "extra__skein__"

# Storage settings under the names S3 and Lithops users know -> Skein's
# (SKEIN_STORAGE_<NAME>).
STORAGE_KEY_ALIASES = {
    "access_key_id": "access_key",
    "secret_access_key": "secret_key",
    "iam_api_key": "api_key",
}
_SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "credential")


class SkeinError(AirflowException):
    """submit exited with an error. exit_code and stderr carry what it said."""

    def __init__(self, message: str, exit_code: int | None = None, stderr: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr


class SkeinUsageError(SkeinError):
    """submit refused its arguments or input (exit 2)."""


class SkeinJobFailedError(SkeinError):
    """A function failed after its retries (exit 3); stderr has the remote traceback."""


class SkeinTimeoutError(SkeinError):
    """The job timed out (exit 4)."""


class SkeinBusError(SkeinError):
    """submit could not reach the bus (exit 5)."""


class SkeinCancelledError(SkeinError):
    """The job was cancelled (exit 6)."""


_ERRORS: dict[int, tuple[type[SkeinError], str]] = {
    EXIT_USAGE: (SkeinUsageError, "submit refused the request (exit 2, usage or bad input)"),
    EXIT_JOB_FAILED: (SkeinJobFailedError, "the Skein job failed (exit 3); the remote error follows"),
    EXIT_TIMEOUT: (SkeinTimeoutError, "the Skein job timed out (exit 4)"),
    EXIT_BUS: (SkeinBusError, "submit cannot reach the Skein bus (exit 5)"),
    EXIT_CANCELLED: (SkeinCancelledError, "the Skein job was cancelled (exit 6)"),
}


def error_for(exit_code: int, stderr: str, what: str) -> SkeinError:
    """The exception for a submit exit code, with its stderr tail in the message."""
    cls, text = _ERRORS.get(exit_code, (SkeinError, f"submit failed with exit code {exit_code} (internal error)"))
    msg = f"{what}: {text}"
    if stderr.strip():
        msg += ":\n" + stderr.rstrip()
    return cls(msg, exit_code=exit_code, stderr=stderr)


def parse_stdout(stdout: str, what: str) -> Any:
    """The JSON value submit printed on stdout (one line)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        raise SkeinError(f"{what}: submit exited 0 but printed no result on stdout", exit_code=0)
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise SkeinError(
            f"{what}: submit printed something that is not JSON on stdout ({e}): {lines[-1][:200]!r}", exit_code=0
        ) from e


@dataclass
class SkeinSettings:
    """What the hook resolved: the submit binary and its environment additions."""

    submit_path: str
    env: dict[str, str] = field(default_factory=dict)  # variables the hook sets (may hold secrets)
    source: str = "environment"  # "connection <id>" or "environment"


def _mask(value: Any) -> None:
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret

        mask_secret(value)
    except Exception:  # the masker is best effort outside a task
        pass


def _is_secret(name: str) -> bool:
    n = name.lower()
    return any(w in n for w in _SECRET_WORDS)


def _bus_url(host: str | None, port: int | None, login: str | None, password: str | None, scheme: str) -> str | None:
    if not host:
        return None
    url = host if "://" in host else f"{scheme}://{host}"
    parts = urlsplit(url)
    netloc = parts.netloc
    if port and parts.port is None:
        netloc = f"{netloc}:{port}"
    if login and "@" not in netloc:
        cred = quote(login, safe="")
        if password:
            cred += ":" + quote(password, safe="")
        netloc = f"{cred}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def find_submit(explicit: str | None = None) -> str:
    """The submit binary: explicit path, SKEIN_SUBMIT, then submit or skein-submit on PATH."""
    for cand, where in ((explicit, "submit_path"), (os.environ.get("SKEIN_SUBMIT"), "SKEIN_SUBMIT")):
        if cand:
            path = cand if os.sep in cand else shutil.which(cand)
            if not path or not os.access(path, os.X_OK):
                raise AirflowException(f"the Skein submit binary from {where}={cand!r} is not an executable file")
            return path
    for name in ("submit", "skein-submit"):
        path = shutil.which(name)
        if path:
            return path
    raise AirflowException(
        "cannot find the Skein submit binary: set submit_path in the skein connection's extra, "
        "the SKEIN_SUBMIT environment variable, or put submit (or skein-submit) on PATH"
    )


class SkeinHook(BaseHook):
    """Runs ``submit`` with the settings of a ``skein`` connection."""

    conn_name_attr = "skein_conn_id"
    default_conn_name = "skein_default"
    conn_type = "skein"
    hook_name = "Skein"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form for Airflow before 3.2 (later ones read the provider info)."""
        from skein_provider import PLACEHOLDERS, RELABELING

        return {"hidden_fields": ["schema"], "relabeling": dict(RELABELING), "placeholders": dict(PLACEHOLDERS)}

    def __init__(self, skein_conn_id: str | None = default_conn_name, submit_path: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.skein_conn_id = skein_conn_id
        self.submit_path = submit_path
        self._proc: subprocess.Popen | None = None
        self._settings: SkeinSettings | None = None

    # -- settings -------------------------------------------------------------

    def get_conn(self) -> SkeinSettings:
        return self.settings()

    def settings(self) -> SkeinSettings:
        if self._settings is None:
            conn = None
            if self.skein_conn_id:
                try:
                    conn = self.get_connection(self.skein_conn_id)
                except AirflowNotFoundException:
                    if self.skein_conn_id != self.default_conn_name:
                        raise AirflowException(
                            f"the Skein connection {self.skein_conn_id!r} does not exist; create it "
                            f"(type skein) or leave skein_conn_id at {self.default_conn_name!r} to use "
                            "Skein's config file or the embedded default"
                        ) from None
            self._settings = self._settings_from(conn)
        return self._settings

    async def asettings(self) -> SkeinSettings:
        """settings() for the triggerer, where connection look-ups are async."""
        if self._settings is None:
            conn = None
            if self.skein_conn_id:
                try:
                    conn = await self.aget_connection(self.skein_conn_id)
                except AirflowNotFoundException:
                    if self.skein_conn_id != self.default_conn_name:
                        raise AirflowException(f"the Skein connection {self.skein_conn_id!r} does not exist") from None
            self._settings = self._settings_from(conn)
        return self._settings

    def _settings_from(self, conn: Any) -> SkeinSettings:
        env: dict[str, str] = {}
        submit_path = self.submit_path
        source = "environment"
        if conn is not None:
            source = f"connection {conn.conn_id}"
            extra = conn.extra_dejson or {}
            if not isinstance(extra, dict):
                raise AirflowException(f"the extra of Skein connection {conn.conn_id!r} must be a JSON object")
            # The connection form may store its fields as extra__skein__<name>.
            extra = {(k[len(_FORM_PREFIX):] if k.startswith(_FORM_PREFIX) else k): v
                     for k, v in extra.items() if v not in (None, "")}
            bus = extra.get("bus") or _bus_url(
                conn.host, conn.port, conn.login, conn.password, str(extra.get("bus_scheme") or "nats")
            )
            if bus:
                _mask(conn.password)
                if urlsplit(bus).password:
                    _mask(bus)
                env["SKEIN_BUS"] = str(bus)
            if extra.get("config"):
                env["SKEIN_CONFIG"] = str(extra["config"])
            storage = extra.get("storage") or {}
            if not isinstance(storage, dict):
                raise AirflowException(f"extra.storage of Skein connection {conn.conn_id!r} must be a JSON object")
            flat = {k[len("storage_"):]: v for k, v in extra.items() if k.startswith("storage_")}
            for k, v in {**flat, **storage}.items():
                if v is None:
                    continue
                k = STORAGE_KEY_ALIASES.get(str(k), str(k))
                name = "SKEIN_STORAGE_" + "".join(c if c.isalnum() else "_" for c in str(k)).upper()
                env[name] = v if isinstance(v, str) else json.dumps(v)
                if _is_secret(str(k)):
                    _mask(env[name])
            more = extra.get("env") or {}
            if not isinstance(more, dict):
                raise AirflowException(f"extra.env of Skein connection {conn.conn_id!r} must be a JSON object")
            for k, v in more.items():
                env[str(k)] = str(v)
                if _is_secret(str(k)):
                    _mask(str(v))
            submit_path = submit_path or extra.get("submit_path")
        return SkeinSettings(submit_path=find_submit(submit_path), env=env, source=source)

    def environment(self, settings: SkeinSettings | None = None) -> dict[str, str]:
        """The full environment of a submit process."""
        s = settings or self.settings()
        env = dict(os.environ)
        env.update(s.env)
        return env

    # -- running submit ---------------------------------------------------------

    def run(self, args: Sequence[str], stdin: bytes | None = None, what: str = "submit", timeout: float | None = None) -> Any:
        """Run ``submit ARGS``, stream its stderr to the log, and return the JSON value it printed.

        Raises a SkeinError subclass chosen by the exit code, with the tail of
        stderr (the remote traceback of a failed function) in its message.
        """
        s = self.settings()
        argv = [s.submit_path, *args]
        self.log.info("running %s (settings from %s; environment set: %s)", " ".join(argv), s.source,
                      ", ".join(sorted(s.env)) or "none")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environment(s),
            start_new_session=True,
        )
        self._proc = proc
        out_chunks: list[bytes] = []
        tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)

        def feed() -> None:
            try:
                if stdin is not None and proc.stdin is not None:
                    proc.stdin.write(stdin)
            except BrokenPipeError:
                pass
            finally:
                if proc.stdin is not None:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass

        def drain() -> None:
            assert proc.stdout is not None
            out_chunks.append(proc.stdout.read())

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain, daemon=True)]
        for t in threads:
            t.start()
        timer = None
        if timeout:
            timer = threading.Timer(timeout, self.kill)
            timer.start()
        try:
            assert proc.stderr is not None
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                tail.append(line)
                self.log.info("submit: %s", line)
            rc = proc.wait()
        finally:
            if timer:
                timer.cancel()
            for t in threads:
                t.join(timeout=10)
            self._proc = None
        stdout = b"".join(out_chunks).decode("utf-8", "replace")
        if rc != 0:
            raise error_for(rc, "\n".join(tail), what)
        return parse_stdout(stdout, what)

    def kill(self) -> None:
        """Stop a running submit process (its whole process group)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def submit(self, mode: str, flags: Iterable[str], payload: Any) -> Any:
        """``submit MODE FLAGS`` with payload (data or iterdata) as JSON on stdin."""
        data = json.dumps(payload).encode()
        return self.run([mode, *flags], stdin=data, what=f"submit {mode}")

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        return self.run(["wait", job_id], what=f"submit wait {job_id}", timeout=timeout)

    def result(self, job_id: str) -> Any:
        return self.run(["result", job_id], what=f"submit result {job_id}")

    def status(self, job_id: str) -> Any:
        return self.run(["status", job_id], what=f"submit status {job_id}")

    def cancel(self, job_id: str) -> Any:
        return self.run(["cancel", job_id], what=f"submit cancel {job_id}")

    async def async_wait(self, job_id: str) -> tuple[int, str, str]:
        """``submit wait JOB`` as an asyncio subprocess: it blocks on the job's
        completion event on the bus (no polling). Returns (exit code, stdout, stderr)."""
        s = await self.asettings()
        proc = await asyncio.create_subprocess_exec(
            s.submit_path, "wait", job_id,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.environment(s),
            start_new_session=True,
        )
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                await proc.wait()
            raise
        return proc.returncode or 0, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
