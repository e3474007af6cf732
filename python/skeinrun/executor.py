"""FunctionExecutor: Lithops' executor API, run by Skein's ``submit``.

Each job (``call_async``, ``map``, ``map_reduce``) is one ``submit`` run:
the function is pickled with cloudpickle (with skeinrun._remote, the envelope
that carries arguments, results and exceptions as pickles) into a file that
``submit --function py:@FILE`` ships with the job's modules; the iterdata is a
JSON file of the pickled calls. ``submit`` runs the job embedded (the default:
an in-process NATS server, coordinator and workers) or on a bus, and prints
the results; a thread per job reads them and fills the job's futures.

With a warm installation (the default: ``warm=True``, or ``skein: {warm:
true}`` in the config, and no bus) the executor starts one ``submit __serve
--embedded`` process at the first job: a NATS server, a coordinator and a
runtime inside it, kept up as long as the executor, so that the runtime's
Python interpreters stay up between jobs. Every job is one JSON line to it
(_Session) with the job's submit arguments; its results come back as lines.
On a configured bus the executor keeps one ``submit __serve --bus`` process
the same way, with an open bus connection. ``warm=False`` runs each job as
an embedded ``submit`` process of its own.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import inspect
import itertools
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable

import cloudpickle

from . import _modules, _remote
from . import wait as _wait
from ._binary import submit_path
from .config import ConfigError, translate
from .future import FunctionTimeoutError, FuturesList, JobError, ResponseFuture, decode, wait_for

_counter = itertools.count()

# Keyword arguments of FunctionExecutor besides Lithops' named ones, and where
# they go. Any other keyword is refused, naming it.
_EXECUTOR_KWARGS = ("max_workers", "workers", "bus", "warm", "runtime_memory", "python", "remote_invocation")
# Lithops keywords that name a compute or storage backend: only localhost
# carries over (Skein runs functions on its own runtimes, on its own bus).
_LOCAL = (None, "localhost")

_EXIT_KINDS = {2: "usage", 3: "failed", 4: "timeout", 5: "unreachable", 6: "cancelled"}
_TASK_ERR = re.compile(r"task (\d+): ([a-z_]+): ")


def _header_pickle(obj: Any, name: str) -> bytes:
    cloudpickle.register_pickle_by_value(_remote)
    try:
        data = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        cloudpickle.unregister_pickle_by_value(_remote)
    header = {"python": "%d.%d.%d" % sys.version_info[:3], "cloudpickle": cloudpickle.__version__, "name": name}
    return b"#skein-pickle " + json.dumps(header).encode() + b"\n" + data


def _fn_name(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', None) or type(fn).__name__}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _dumps(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _reserved(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters) & {"id", "storage", "obj"}
    except (TypeError, ValueError):
        return set()


def _user_sig(fn: Any) -> inspect.Signature | None:
    """fn's signature without the parameters the executor provides (id, storage)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    return sig.replace(parameters=[p for n, p in sig.parameters.items() if n not in ("id", "storage", "ibm_cos")])


def _as_list(iterdata: Any) -> list:
    """Iterdata as Lithops takes it: a list (ranges, sets, tuples of calls,
    generators and other iterables become lists); a dict or any other single
    value is one call."""
    if isinstance(iterdata, list):
        return iterdata
    if isinstance(iterdata, (range, set, frozenset)):
        return list(iterdata)
    if isinstance(iterdata, (str, bytes, dict, tuple)):
        return [iterdata]
    if hasattr(iterdata, "__iter__") and hasattr(iterdata, "__next__"):
        return list(iterdata)  # a generator or iterator
    return [iterdata]


def _call_args(sig: inspect.Signature | None, elem: Any, extra_args: Any,
               bound: set | None = None) -> tuple[tuple, dict]:
    """(args, kwargs) of one call: a tuple is positional arguments, a dict
    keyword arguments, anything else (a list too) the single argument, with
    extra_args appended (a tuple) or merged (a dict), as Lithops' format_data
    and verify_args do. Raises what Lithops raises for a call that does not
    bind to the function. bound, when given, holds the shapes (how many
    positional arguments, which keywords) already checked: whether a call
    binds depends on its shape only, and a map's elements mostly share one
    (checking each cost about 3 µs an element)."""
    if isinstance(elem, dict):
        kwargs = dict(elem)
        if extra_args is not None:
            if not isinstance(extra_args, dict):
                raise TypeError("extra_args must contain kwargs in a dictionary (the iterdata holds dicts)")
            kwargs.update(extra_args)
        args: tuple = ()
    else:
        args = elem if isinstance(elem, tuple) else (elem,)
        if extra_args is not None:
            if isinstance(elem, tuple) and not isinstance(extra_args, tuple):
                raise TypeError("extra_args must contain args in a tuple (the iterdata holds tuples)")
            if isinstance(extra_args, dict):
                raise TypeError("extra_args must contain args in a tuple (the iterdata holds positional arguments)")
            args = args + tuple(extra_args)
        kwargs = {}
    shape = None
    if sig is not None and bound is not None:
        shape = (len(args), frozenset(kwargs) if kwargs else None)
        if shape in bound:
            return args, kwargs
    if sig is not None:
        var_kw = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        if kwargs and not var_kw:
            missing = [n for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty
                       and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in kwargs and n != "obj"]
            if missing:
                raise ValueError(f"Check the args names in the data. You provided these args: {list(kwargs)}, "
                                 f"and the args must be: {list(sig.parameters)}")
        sig.bind(*args, **kwargs)  # TypeError as Lithops raises it
        if shape is not None:
            bound.add(shape)
    return args, kwargs


class _Job:
    """One job (a submit run, or a request to the executor's submit serve
    process) and the futures it fills."""

    def __init__(self, executor: "FunctionExecutor", job_id: str, function_name: str, n: int, kind: str):
        self.executor = executor
        self.job_id = job_id
        self.function_name = function_name
        self.kind = kind
        self.submitted = time.time()
        self.finished = threading.Event()
        self.cancelled = False
        self.proc: subprocess.Popen | None = None
        # session: the executor's submit serve process that runs this job
        # (jobs on a bus); None: a submit process of its own (embedded).
        self.session: _Session | None = None
        self.skein_id: str | None = None  # the job's id on the bus (serve tells it)
        self._last_line: Any = None
        self.dir = os.path.join(executor._dir, job_id)
        self.plot_file = os.path.join(self.dir, "timeline.html")
        self.futures = [ResponseFuture(executor, self, i) for i in range(n)]
        self.reduce_futures: list[ResponseFuture] = []
        self.per_object = False  # mapreduce: one reducer per storage object
        # Waiters to wake: (condition, each) where each means at every
        # call's result, not only at the job's end.
        self._listeners: list[tuple[threading.Condition, bool]] = []
        self._lock = threading.Lock()
        self.stderr = ""
        self.exit_code: int | None = None
        # stream: submit prints each call's result as it lands (--stream),
        # and each future completes then, not at the job's end.
        self.stream = False

    def add_listener(self, cond: threading.Condition, each: bool = True) -> None:
        """Wake cond at the job's end, and at every call's result if each
        (a waiter for all of a job's calls needs only the end: a wake-up a
        result cost a 10,000-call map about 30 ms)."""
        with self._lock:
            self._listeners.append((cond, each))
        if self.finished.is_set():
            with cond:
                cond.notify_all()

    def remove_listener(self, cond: threading.Condition) -> None:
        with self._lock:
            self._listeners = [(c, e) for c, e in self._listeners if c is not cond]

    def cancel(self) -> None:
        self.cancelled = True
        if self.session is not None:
            self.session.cancel(self.job_id)  # serve cancels the job (exit 6)
            return
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)  # submit cancels its job (exit 6)

    def all_futures(self) -> list[ResponseFuture]:
        return self.futures + self.reduce_futures

    def run(self, argv: list[str], env: dict[str, str]) -> None:
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, cwd=self.dir)
        except OSError as e:
            self._finish_error(JobError(f"cannot run {argv[0]}: {e}"))
            return
        target = self._wait_stream if self.stream else self._wait
        threading.Thread(target=target, name=f"skeinrun-{self.job_id}", daemon=True).start()

    def run_session(self, session: "_Session", args: list[str]) -> None:
        """Send the job to the executor's submit serve process; its lines
        come back through on_line and its end through on_exit."""
        self.session = session
        try:
            session.submit(self, args)
        except JobError as e:
            self._finish_error(e)

    def on_line(self, line: Any) -> None:
        """One line the job's submit printed on stdout (serve)."""
        if self.stream:
            self._stream_line(line)
        else:
            self._last_line = line

    def on_exit(self, code: int, stderr: str, skein_id: str | None = None) -> None:
        """The job's end (serve): its exit code, stderr and Skein job id."""
        try:
            self.skein_id = skein_id
            self.stderr, self.exit_code = stderr, code
            if code != 0:
                self._finish_error(self._job_error())
            elif self.stream:
                self._stream_end()
            else:
                self._finish_results(self._last_line)
        except BaseException as e:  # never leave a waiter hanging
            self._finish_error(JobError(f"job {self.job_id}: reading submit's output failed: {e!r}"))

    def _stream_line(self, msg: Any) -> None:
        i = msg.get("index") if isinstance(msg, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(self.futures) or "result" not in msg:
            return  # the status line, or a failing call (its error comes with the job's)
        f = self.futures[i]
        if not f.done:
            self._settle(f, msg["result"], time.time())
            self._notify(each=True)

    def _stream_end(self) -> None:
        if not all(f.done for f in self.futures):
            self._finish_error(JobError(f"job {self.job_id}: submit ended without the result of every call"))
        else:
            self._done()

    def _wait_stream(self) -> None:
        """Read submit --stream's lines: each call's result completes its
        future at once (ANY_COMPLETED and as-completed waits wake on it);
        a failed job fails the calls without a result as before."""
        try:
            errs: list[bytes] = []
            reader = threading.Thread(target=lambda: errs.append(self.proc.stderr.read()), daemon=True)
            reader.start()
            for raw in self.proc.stdout:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                self._stream_line(msg)
            self.proc.wait()
            reader.join()
            self.stderr = (errs[0] if errs else b"").decode(errors="replace")
            self.exit_code = self.proc.returncode
            if self.exit_code != 0:
                self._finish_error(self._job_error())
            else:
                self._stream_end()
        except BaseException as e:  # never leave a waiter hanging
            self._finish_error(JobError(f"job {self.job_id}: reading submit's output failed: {e!r}"))

    def _notify(self, each: bool = False) -> None:
        """Wake the listeners: those that wait for each result only (each),
        or all of them (the job's end)."""
        with self._lock:
            listeners = [c for c, e in self._listeners if e or not each]
        for c in listeners:
            with c:
                c.notify_all()

    def _wait(self) -> None:
        try:
            out, err = self.proc.communicate()
            self.stderr = err.decode(errors="replace")
            self.exit_code = self.proc.returncode
            if self.exit_code == 0:
                self._finish_ok(out)
            else:
                self._finish_error(self._job_error())
        except BaseException as e:  # never leave a waiter hanging
            self._finish_error(JobError(f"job {self.job_id}: reading submit's output failed: {e!r}"))

    def _job_error(self) -> JobError:
        code = self.exit_code
        what = _EXIT_KINDS.get(code, "internal error")
        msg = self.stderr.strip() or f"submit exited with {code}"
        m = _TASK_ERR.search(self.stderr)
        kind = m.group(2) if m else what
        text = f"job {self.job_id} ({self.function_name}) {what}: {msg}"
        if kind == "timeout" or code == 4:
            return FunctionTimeoutError(text, kind="timeout", stderr=self.stderr, exit_code=code)
        return JobError(text, kind=kind, stderr=self.stderr, exit_code=code)

    def _finish_ok(self, out: bytes) -> None:
        line = out.decode().strip().splitlines()
        try:
            results = json.loads(line[-1]) if line else None
        except ValueError as e:
            self._finish_error(JobError(f"job {self.job_id}: submit printed no JSON result ({e}): {out[-200:]!r}"))
            return
        self._finish_results(results)

    def _finish_results(self, results: Any) -> None:
        t = time.time()
        if self.kind == "map":
            if not isinstance(results, list):
                results = [results]
            if len(results) != len(self.futures):
                # Storage iterdata: one call per object or chunk, known only now.
                self.futures[:] = [ResponseFuture(self.executor, self, i) for i in range(len(results))]
            for f, r in zip(self.futures, results):
                self._settle(f, r, t)
        else:  # mapreduce: map futures produce no output; one reducer, or one per object
            for f in self.futures:
                f._set_mapreduce()
                f._set_result(None, t)
            outs = results if self.per_object and isinstance(results, list) else [results]
            if len(outs) != len(self.reduce_futures):
                self.reduce_futures[:] = [ResponseFuture(self.executor, self, i) for i in range(len(outs))]
            for f, r in zip(self.reduce_futures, outs):
                self._settle(f, r, t)
        self._done()

    def _settle(self, f: ResponseFuture, r: Any, t: float) -> None:
        try:
            ok, value = decode(r)
        except Exception as e:  # a result class this process cannot import
            ok, value = False, JobError(f"the result of call {f.call_id} cannot be unpickled here: {e!r}")
        if ok:
            f._set_result(value, t)
        else:
            f._set_exception(value, t)

    def _finish_error(self, exc: JobError) -> None:
        t = time.time()
        for f in self.all_futures():
            if not f.done:
                f._set_exception(exc, t)
        self._done()

    def _done(self) -> None:
        self.finished.set()
        self._notify()


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM when the executor's
    process dies, so that a killed Python leaves no installation behind."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    os.setpgrp()  # a Ctrl-C at the terminal goes to the executor, which stops these in order


class _Command:
    """A request to submit serve that is not a job (plot): waited for."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.finished = threading.Event()
        self.exit_code = 1
        self.stderr = ""

    def on_line(self, line: Any) -> None:
        pass

    def on_exit(self, code: int, stderr: str, skein_id: str | None = None) -> None:
        self.exit_code, self.stderr = code, stderr
        self.finished.set()

    def _finish_error(self, exc: Exception) -> None:
        self.on_exit(1, str(exc))


class _Session:
    """One ``submit __serve`` process (submit's client mode, pkg/cli/serve.go)
    that runs every job of an executor on a bus over one open connection: a
    job is one JSON line to it, its results lines back, so that a warm job
    costs no process start and no bus handshake.

    The process is started by the thread that reads its replies, which lives
    as long as it does (Linux sends the parent-death signal when the thread
    that started a child ends). It ends when the executor closes its stdin,
    or when the executor's process dies (stdin closes, and the parent-death
    signal), cancelling the jobs it still runs. If it dies, the jobs in it
    fail with an error that says so and the executor starts another one for
    its next job."""

    def __init__(self, binary: str, bus: str, flags: list[str], env: dict[str, str], directory: str):
        self.bus = bus  # the bus URL, or "embedded" for the warm installation
        self._log_path = os.path.join(directory, f"serve-{uuid.uuid4().hex[:6]}.log")
        self._argv = [binary, "__serve"] + flags
        self._env = env
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()  # _jobs and writes to stdin
        self._ready = threading.Event()
        self._error: str | None = None
        self._error_code: int | None = None
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, name="skeinrun-serve", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            self.close()
            raise JobError(f"submit serve did not start within 60s; its log: {self._tail()}")
        if self._error is not None:
            self.close()
            code = self._error_code
            what = _EXIT_KINDS.get(code, "internal error") if code is not None else "internal error"
            said = self._tail() if code is not None else self._error
            raise JobError(f"submit serve could not start ({bus}, {what}): {said}", kind=what,
                           stderr=said, exit_code=code)

    def alive(self) -> bool:
        return self.exit_code is None and self._error is None

    def _run(self) -> None:
        try:
            with open(self._log_path, "ab") as log:
                self.proc = subprocess.Popen(self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                             env=self._env, preexec_fn=_die_with_parent)
        except BaseException as e:
            self._error = f"cannot run {self._argv[0]}: {e}"
            self._ready.set()
            return
        try:
            for raw in self.proc.stdout:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if not isinstance(msg, dict):
                    continue
                jid = msg.get("id")
                if jid is None:
                    if msg.get("ready"):
                        self._ready.set()
                    elif "error" in msg and not self._ready.is_set():
                        self._error = str(msg["error"])
                        self._error_code = msg.get("exit")
                        self._ready.set()
                    continue
                with self._lock:
                    job = self._jobs.get(jid)
                    if job is not None and "exit" in msg:
                        del self._jobs[jid]
                if job is None:
                    continue
                if "exit" in msg:
                    job.on_exit(int(msg["exit"]), str(msg.get("stderr") or ""), msg.get("job"))
                elif "line" in msg:
                    job.on_line(msg["line"])
        finally:
            self.exit_code = self.proc.wait()
            if self._error is None and not self._ready.is_set():
                self._error = f"submit serve exited with {self.exit_code}: {self._tail()}"
            self._ready.set()
            with self._lock:
                orphans, self._jobs = list(self._jobs.values()), {}
            for job in orphans:
                job._finish_error(JobError(
                    f"job {job.job_id}: the executor's submit serve process exited ({self.exit_code}) while it ran "
                    f"the job; the next job starts another. Its log: {self._tail()}", kind="internal"))

    def submit(self, job: "_Job", args: list[str]) -> None:
        line = (json.dumps({"id": job.job_id, "args": args}) + "\n").encode()
        with self._lock:
            if not self.alive() or self.proc is None:
                raise JobError(f"job {job.job_id}: the executor's submit serve process has exited ({self.exit_code})",
                               kind="internal")
            self._jobs[job.job_id] = job
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except OSError as e:
                del self._jobs[job.job_id]
                raise JobError(f"job {job.job_id}: cannot send it to submit serve ({e}); its log: {self._tail()}",
                               kind="internal") from None

    def run(self, args: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run one command (plot) and wait for its end: (exit code, stderr)."""
        done = _Command(f"cmd-{uuid.uuid4().hex[:12]}")
        self.submit(done, args)
        if not done.finished.wait(timeout):
            return 4, f"no answer from submit serve within {timeout:g}s"
        return done.exit_code, done.stderr

    def cancel(self, job_id: str) -> None:
        with self._lock:
            if job_id not in self._jobs or self.proc is None:
                return
            try:
                self.proc.stdin.write((json.dumps({"id": job_id, "cancel": True}) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:
                pass

    def close(self, timeout: float = 30) -> None:
        """Close stdin (serve cancels what still runs and exits), then wait."""
        p = self.proc
        if p is not None:
            with self._lock:
                try:
                    p.stdin.close()
                except OSError:
                    pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._thread.join(timeout)

    def _tail(self) -> str:
        try:
            with open(self._log_path, "rb") as f:
                return f.read()[-2000:].decode(errors="replace").strip() or "(empty)"
        except OSError:
            return "(none)"


class FunctionExecutor:
    """Lithops' FunctionExecutor on Skein.

    With nothing configured, every job runs embedded in its own ``submit``
    process. A bus (``bus=``, ``config={'bus': ...}``, a Lithops config's
    ``rabbitmq.amqp_url``, or ``SKEIN_BUS``) sends the jobs to a running
    Skein installation; ``warm=True`` starts a private one on loopback.
    Keywords with no meaning in Skein are refused with an error naming them.
    """

    def __init__(
        self,
        mode: str | None = None,
        config: dict | None = None,
        config_file: str | None = None,
        backend: str | None = None,
        storage: str | None = None,
        monitoring: str | None = None,
        log_level: Any = False,
        runtime: str | None = None,
        **kwargs: Any,
    ):
        bad = [k for k in kwargs if k not in _EXECUTOR_KWARGS]
        if bad:
            raise ConfigError(
                "FunctionExecutor: " + ", ".join(repr(k) for k in bad) + ": no meaning in Skein; remove "
                + ("it" if len(bad) == 1 else "them") + f" (known besides Lithops' arguments: {', '.join(_EXECUTOR_KWARGS)})")
        for name, value in (("mode", mode), ("backend", backend), ("storage", storage)):
            if value not in _LOCAL:
                raise ConfigError(f"FunctionExecutor: {name}={value!r}: no meaning in Skein (only 'localhost' carries "
                                  "over: Skein runs functions on its own runtimes; give a bus for a cluster)")
        if monitoring not in (None, "storage", "rabbitmq"):
            raise ConfigError(f"FunctionExecutor: monitoring={monitoring!r}: no meaning in Skein (it follows jobs "
                              "through events on its bus)")
        if runtime is not None:
            raise ConfigError("FunctionExecutor: runtime: no meaning in Skein (functions run in the Python that "
                              "SKEIN_PYTHON or the config's python names)")
        cfg = dict(config or {})
        if config_file or (config is None and os.environ.get("LITHOPS_CONFIG_FILE")):
            cfg = {**_read_config_file(config_file or os.environ["LITHOPS_CONFIG_FILE"]), **cfg}
        skein_section = cfg.pop("skein", None) or {}
        if not isinstance(skein_section, dict):
            raise ConfigError("config: skein must be a dict")
        bad = [k for k in skein_section if k not in ("warm", "workers", "bus", "python")]
        if bad:
            raise ConfigError("config: " + ", ".join(f"skein.{k}" for k in bad) + ": no meaning in Skein")
        main = next((cfg[m] for m in ("lithops", "pywren", "cloudbutton") if isinstance(cfg.get(m), dict)), {})
        self.data_cleaner = bool(main.get("data_cleaner", True))
        self.config = {"lithops": dict(main), "skein": dict(skein_section)}
        self._retries = main.get("retries", 0)
        self._translated = translate(cfg)
        for k in ("bus", "python"):
            if skein_section.get(k) is not None:
                self._translated.config[k] = skein_section[k]
        if kwargs.get("bus"):
            self._translated.config["bus"] = kwargs["bus"]
        if kwargs.get("python"):
            self._translated.config["python"] = kwargs["python"]
        workers = kwargs.get("max_workers") or kwargs.get("workers") or skein_section.get("workers") \
            or self._translated.workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers <= 0):
            raise ConfigError(f"FunctionExecutor: max_workers must be a positive integer, got {workers!r}")
        self.max_workers = workers
        self._runtime_memory = kwargs.get("runtime_memory")
        self._task_timeout = self._translated.task_timeout
        lv = log_level if log_level else self._translated.log_level
        self._log_level = {"warning": "warn", "critical": "error"}.get(str(lv).lower(), str(lv).lower()) if lv else None
        self._warm_wanted = bool(kwargs.get("warm", skein_section.get("warm", True)))
        self._binary = submit_path()
        self.executor_id = f"{uuid.uuid4().hex[:6]}-{next(_counter)}"
        self._dir = tempfile.mkdtemp(prefix=f"skeinrun-{self.executor_id}-")
        os.makedirs(os.path.join(self._dir, "fn"), exist_ok=True)
        self._config_file = None
        if self._translated.config:
            self._config_file = os.path.join(self._dir, "skein.json")
            fd = os.open(self._config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self._translated.config, f)
        self.futures: list[ResponseFuture] = []
        self.jobs: list[_Job] = []
        self.total_jobs = 0
        self.last_call: str | None = None
        self.cleaned_jobs: set[str] = set()
        self._session: _Session | None = None
        self._serve = True  # jobs go through one submit serve process (warm, or on a bus)
        self._warm_lock = threading.RLock()
        self._closed = False
        self.storage = _remote.Storage(self._translated.config.get("storage"))
        atexit.register(self._close)

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "FunctionExecutor":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass

    def _close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        for j in self.jobs:
            if not j.finished.is_set():
                j.cancel()
        for j in self.jobs:
            j.finished.wait(30)
        if self._session is not None:
            self._session.close()
        shutil.rmtree(self._dir, ignore_errors=True)
        atexit.unregister(self._close)

    # -- the environment and flags of a submit run ----------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        py = self._translated.config.get("python")
        if "SKEIN_PYTHON" not in env and not py:
            env["SKEIN_PYTHON"] = sys.executable  # the functions' Python has cloudpickle and this one's packages
        return env

    def _bus(self) -> str | None:
        return self._translated.config.get("bus") or os.environ.get("SKEIN_BUS") or None

    def _warm_mode(self) -> bool:
        """Jobs run on the executor's own warm installation (no bus given)."""
        return self._warm_wanted and not self._bus()

    def _common_flags(self, job: _Job, timeout: float | None, runtime_memory: int | None,
                      extra_env: dict | None, include: list[str], exclude: list[str]) -> list[str]:
        flags = ["--quiet", "--plot", job.plot_file]
        if self._config_file:
            flags += ["--config", self._config_file]
        bus = self._bus()
        if bus:
            flags += ["--bus", bus]
        elif self.max_workers:
            flags += ["--workers", str(self.max_workers)]
        if self._log_level:
            flags += ["--log-level", self._log_level]
        t = timeout if timeout is not None else self._task_timeout
        if t is not None:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
                raise ValueError(f"timeout must be a positive number of seconds, got {t!r}")
            flags += ["--task-timeout", f"{float(t):g}"]
        mem = runtime_memory if runtime_memory is not None else self._runtime_memory
        if mem is not None:
            if isinstance(mem, bool) or not isinstance(mem, int) or mem <= 0:
                raise ValueError(f"runtime_memory must be a positive number of MB, got {mem!r}")
            flags += ["--runtime-memory", str(mem)]
        for k, v in (extra_env or {}).items():
            if not isinstance(k, str) or not k or "=" in k:
                raise ValueError(f"extra_env: bad variable name {k!r}")
            flags += ["--env", f"{k}={v}"]
        for p in include:
            flags += ["--include-modules", p]
        for p in exclude:
            flags += ["--exclude-modules", p]
        if self.data_cleaner:
            flags.append("--clean")
        return flags

    def _ship_function(self, fn: Any, envelope: Any, include_modules: Any, exclude_modules: Any) -> tuple[str, list, list]:
        """Pickle envelope (fn inside) into a content-named file; the modules
        to ship: those fn uses (unless include_modules is None), and
        include_modules' entries."""
        if not callable(fn):
            raise TypeError(f"the function must be callable, not {type(fn).__name__}")
        blob = _header_pickle(envelope, _fn_name(fn))
        name = f"skein_fn_{hashlib.sha256(blob).hexdigest()[:16]}.pkl"
        path = os.path.join(self._dir, "fn", name)
        if not os.path.exists(path):
            with open(path + ".part", "wb") as f:
                f.write(blob)
            os.replace(path + ".part", path)
        script = getattr(sys.modules.get("__main__"), "__file__", None)
        include: list[str] = []
        if include_modules is not None:
            include = _modules.resolve_includes(list(include_modules), script)
            for p in _modules.used_paths(fn, script):
                if p not in include:
                    include.append(p)
        exclude = list(exclude_modules or [])
        return path, include, exclude

    def _new_job(self, prefix: str, fn: Any, n: int, kind: str) -> _Job:
        if self._closed:
            raise RuntimeError("this FunctionExecutor is closed")
        with self._warm_lock:  # map() may be called from several threads
            job_id = f"{prefix}{str(self.total_jobs).zfill(3)}"
            self.total_jobs += 1
        job = _Job(self, job_id, _fn_name(fn), n, kind)
        os.makedirs(job.dir)
        return job

    def _iterdata_file(self, job: _Job, fn: Any, data: list, extra_args: Any) -> tuple[str, bool]:
        """Write the job's iterdata; returns (path, storage) where storage
        means the elements name storage for an obj function (sent as they
        are, to be expanded into objects or chunks by the coordinator)."""
        wants = _reserved(fn)
        path = os.path.join(job.dir, "iterdata.json")
        if "obj" in wants and data and all(isinstance(e, str) for e in data):
            if extra_args is not None and not isinstance(extra_args, dict):
                raise TypeError("extra_args of a function with obj must be a dict")
            with open(path, "w") as f:
                json.dump(data, f)
            return path, True
        sig = _user_sig(fn)
        bound: set = set()
        with open(path, "w") as f:
            f.write("[")
            for i, elem in enumerate(data):
                args, kwargs = _call_args(sig, elem, extra_args, bound)
                if i:
                    f.write(",")
                f.write('{"p":"' + _b64(_dumps((i, args, kwargs))) + '"}')
            f.write("]")
        return path, False

    def _start(self, job: _Job, argv: list[str]) -> None:
        self.jobs.append(job)
        self.futures.extend(job.all_futures())
        bus = self._bus()
        if self._serve and (bus or self._warm_mode()):
            try:
                session = self._session_for(bus)
            except JobError as e:  # the bus is unreachable, say: the job fails as its submit would
                job._finish_error(JobError(f"job {job.job_id} ({job.function_name}) {e}", kind=e.kind,
                                           stderr=e.stderr, exit_code=e.exit_code))
                return
            if session is not None:
                # No timeline per job: plot() asks serve for it when wanted
                # (writing it took about 2 ms of a warm job's 6).
                args = argv[1:]
                if "--plot" in args:
                    i = args.index("--plot")
                    del args[i:i + 2]
                job.run_session(session, args)
                return
        job.run(argv, self._env())

    def _session_for(self, bus: str | None) -> "_Session | None":
        """The submit serve process of bus, or with no bus of the executor's
        warm installation (serve --embedded), started (or restarted after it
        died) here; None when this submit binary has no serve mode."""
        key = bus or "embedded"
        with self._warm_lock:
            s = self._session
            if s is not None and s.alive() and s.bus == key:
                return s
            if s is not None:
                s.close()
                self._session = None
            env = self._env()
            if bus:
                flags = ["--bus", bus]
            else:
                # The warm installation: a NATS server, a coordinator and a
                # runtime inside the serve process, up as long as it is.
                flags = ["--embedded"] + (["--workers", str(self.max_workers)] if self.max_workers else [])
                env.setdefault("SKEIN_PYTHON", self._translated.config.get("python") or sys.executable)
                env.pop("SKEIN_BUS", None)
            if self._config_file:
                flags += ["--config", self._config_file]
            if self._log_level:
                flags += ["--log-level", self._log_level]
            try:
                self._session = _Session(self._binary, key, flags, env, self._dir)
            except JobError as e:
                if "unknown command" in str(e):
                    self._serve = False  # an older submit (SKEIN_SUBMIT): one process per job
                    return None
                raise
            return self._session

    # -- Lithops' API ----------------------------------------------------
    def call_async(self, func: Callable, data: Any, extra_env: dict | None = None, runtime_memory: int | None = None,
                   timeout: float | None = None, include_modules: list | None = [],
                   exclude_modules: list | None = []) -> ResponseFuture:
        """Run func once with data (a tuple: positional arguments; a dict:
        keyword arguments; anything else: the single argument)."""
        self.last_call = "call_async"
        fs = self._map("A", func, [data], None, extra_env, runtime_memory, None, None, timeout,
                       include_modules, exclude_modules)
        return fs[0]

    def map(self, map_function: Callable, map_iterdata: Any, chunksize: int | None = None, extra_args: Any = None,
            extra_env: dict | None = None, runtime_memory: int | None = None, obj_chunk_size: int | None = None,
            obj_chunk_number: int | None = None, obj_newline: str | None = "\n", timeout: float | None = None,
            include_modules: list | None = [], exclude_modules: list | None = []) -> FuturesList:
        """One call of map_function per element of map_iterdata; returns
        their futures at once."""
        self.last_call = "map"
        _check_chunking(chunksize, obj_newline)
        return self._map("M", map_function, map_iterdata, extra_args, extra_env, runtime_memory, obj_chunk_size,
                         obj_chunk_number, timeout, include_modules, exclude_modules)

    def _map(self, prefix, fn, iterdata, extra_args, extra_env, runtime_memory, chunk_size, chunk_n, timeout,
             include_modules, exclude_modules) -> FuturesList:
        data = self._iterdata(iterdata)
        path, include, exclude = self._ship_function(fn, _remote.make_map(fn, self._storage_cfg()), include_modules,
                                                     exclude_modules)
        job = self._new_job(prefix, fn, len(data), "map")
        idata, storage = self._iterdata_file(job, fn, data, extra_args)
        argv = [self._binary, "map", "--function", "py:@" + path, "--iterdata-from", idata]
        if not storage:
            # Results as they land; with storage iterdata the number of
            # calls is known only at the end, so they come all at once.
            argv.append("--stream")
            job.stream = True
        argv += _chunk_flags(chunk_size, chunk_n, storage)
        if storage and extra_args:
            argv += ["--extra-params", json.dumps(extra_args)]
        argv += self._common_flags(job, timeout, runtime_memory, extra_env, include, exclude)
        self._start(job, argv)
        return FuturesList(job.futures, self) if not storage else _LazyFutures(job, self)

    def map_reduce(self, map_function: Callable, map_iterdata: Any, reduce_function: Callable,
                   chunksize: int | None = None, extra_args: Any = None, extra_args_reduce: Any = None,
                   extra_env: dict | None = None, map_runtime_memory: int | None = None,
                   reduce_runtime_memory: int | None = None, timeout: float | None = None,
                   obj_chunk_size: int | None = None, obj_chunk_number: int | None = None,
                   obj_newline: str | None = "\n", obj_reduce_by_key: bool = False,
                   spawn_reducer: int = 20, include_modules: list | None = [], exclude_modules: list | None = [],
                   reducer_one_per_object: bool = False) -> FuturesList:
        """Map, then reduce_function(results) over the map results (one
        reducer per storage object with obj_reduce_by_key or
        reducer_one_per_object). The reducer is fed as the maps finish
        (spawn_reducer is accepted: Skein streams the results to it)."""
        self.last_call = "map_reduce"
        _check_chunking(chunksize, obj_newline)
        if isinstance(spawn_reducer, bool) or not isinstance(spawn_reducer, int) or not (
                spawn_reducer in (_wait.ALWAYS, _wait.ANY_COMPLETED) or 0 <= spawn_reducer <= 100):
            raise ValueError(f"spawn_reducer must be a percentage, ALWAYS or ANY_COMPLETED, got {spawn_reducer!r}")
        per_object = bool(obj_reduce_by_key or reducer_one_per_object)
        data = self._iterdata(map_iterdata)
        mpath, include, exclude = self._ship_function(map_function, _remote.make_map(map_function, self._storage_cfg()),
                                                      include_modules, exclude_modules)
        rpath, rinclude, _ = self._ship_function(
            reduce_function, _remote.make_reduce(reduce_function, extra_args_reduce, self._storage_cfg()),
            include_modules, exclude_modules)
        if os.path.basename(rpath) == os.path.basename(mpath):
            raise ValueError("the map and reduce functions are the same pickle")
        for p in rinclude:
            if p not in include:
                include.append(p)
        job = self._new_job("M", map_function, len(data), "mapreduce")
        job.reduce_futures = [ResponseFuture(self, job, 0)]
        job.per_object = per_object
        for f in job.futures:
            f._set_mapreduce()
        idata, storage = self._iterdata_file(job, map_function, data, extra_args)
        argv = [self._binary, "mapreduce", "--function", "py:@" + mpath, "--reduce-function", "py:@" + rpath,
                "--iterdata-from", idata]
        argv += _chunk_flags(obj_chunk_size, obj_chunk_number, storage)
        if storage and extra_args:
            argv += ["--extra-params", json.dumps(extra_args)]
        if per_object:
            if not storage:
                raise ValueError("reducer_one_per_object (obj_reduce_by_key) needs iterdata that names storage "
                                 "objects and a map function with an obj parameter")
            argv.append("--reducer-one-per-object")
        mem = self._common_flags(job, timeout, None, extra_env, include, exclude)
        if map_runtime_memory is not None:
            mem += ["--map-runtime-memory", str(int(map_runtime_memory))]
        if reduce_runtime_memory is not None:
            mem += ["--reduce-runtime-memory", str(int(reduce_runtime_memory))]
        argv += mem
        self._start(job, argv)
        if storage:
            return _LazyFutures(job, self)
        return FuturesList(job.futures + job.reduce_futures, self)

    def _storage_cfg(self) -> dict:
        st = self._translated.config.get("storage") or {}
        return {"local_root": st["local_root"]} if isinstance(st, dict) and st.get("local_root") else {}

    def _iterdata(self, iterdata: Any) -> list:
        if isinstance(iterdata, FuturesList) or (isinstance(iterdata, list) and iterdata
                                                  and all(isinstance(f, ResponseFuture) for f in iterdata)):
            # Function chaining: the previous calls' results are the arguments.
            return [f.result() for f in iterdata]
        data = _as_list(iterdata)
        if not data:
            raise ValueError("iterdata is empty: nothing to run")
        return data

    def wait(self, fs: Any = None, throw_except: bool = True, return_when: Any = _wait.ALL_COMPLETED,
             download_results: bool = False, timeout: float | None = None, threadpool_size: int = _wait.THREADPOOL_SIZE,
             wait_dur_sec: Any = None, show_progressbar: bool = True) -> tuple[FuturesList, FuturesList]:
        """Wait until return_when holds (ALL_COMPLETED, ANY_COMPLETED, ALWAYS,
        or a percentage of done futures) or timeout seconds pass; returns
        (done, not_done). With throw_except, a done call that raised
        re-raises its exception here."""
        futures = self._futures(fs)
        wait_for(futures, return_when, timeout)
        if throw_except:
            for f in futures:
                if f.error:
                    raise f._exception
        done = [f for f in futures if f.done]
        not_done = [f for f in futures if not f.done]
        return FuturesList(done, self), FuturesList(not_done, self)

    def get_result(self, fs: Any = None, throw_except: bool = True, timeout: float | None = None,
                   threadpool_size: int = _wait.THREADPOOL_SIZE, wait_dur_sec: Any = None,
                   show_progressbar: bool = True) -> Any:
        """The results of fs (default: every future of this executor not read
        yet), in order; a single result when there is one and the last call
        was not a map. Raises a call's exception (throw_except) or
        TimeoutError when timeout passes first."""
        futures = self._futures(fs)
        done, not_done = self.wait(futures, throw_except=throw_except, timeout=timeout)
        if not_done:
            raise TimeoutError(f"{len(not_done)} of {len(futures)} calls not done after {timeout}s")
        result = []
        for f in futures:
            if not f._produce_output:
                continue
            if fs is None and f._read:
                continue
            result.append(f.result(throw_except=throw_except))
            if fs is None:
                f._read = True
        if len(result) == 1 and self.last_call != "map":
            return result[0]
        return result

    def _futures(self, fs: Any) -> list[ResponseFuture]:
        if fs is None:
            if self.last_call is None:
                return []
            return [f for j in self.jobs for f in j.all_futures()]
        if isinstance(fs, (ResponseFuture,)) or hasattr(fs, "response_future"):
            return [fs]
        return [f for f in fs]

    def plot(self, fs: Any = None, dst: str | None = None, figsize: Any = None) -> list[str]:
        """Write the timeline of each job of fs (default: all) as an HTML
        page: ``<dst>_<job>_timeline.html`` (dst defaults to the current
        directory's ``skeinrun``). Returns the files written."""
        futures = self._futures(fs)
        jobs = []
        for f in futures:
            if f._job not in jobs and f._job.finished.is_set():
                jobs.append(f._job)
        out = []
        base = dst or os.path.join(os.getcwd(), "skeinrun")
        if os.path.isdir(base):
            base = os.path.join(base, "skeinrun")
        for j in jobs:
            if not os.path.exists(j.plot_file) and j.skein_id and os.path.isdir(j.dir):
                self._plot_on_bus(j)
            if os.path.exists(j.plot_file):
                p = f"{base}_{self.executor_id}_{j.job_id}_timeline.html"
                shutil.copyfile(j.plot_file, p)
                out.append(p)
        return out

    def clean(self, fs: Any = None, cs: Any = None, clean_cloudobjects: bool = True, clean_fn: bool = False,
              force: bool = False, on_exit: bool = False) -> None:
        """Remove the local files of the finished jobs of fs (default: all):
        their pickles, iterdata and plots. Job artifacts in storage go with
        each job already (data_cleaner, on by default); cs are
        CloudObjects to delete."""
        for co in cs or ():
            self.storage.delete_cloudobject(co)
        futures = self._futures(fs)
        for j in {id(f._job): f._job for f in futures}.values():
            if j.job_id in self.cleaned_jobs or not (j.finished.is_set() or force):
                continue
            if not j.finished.is_set():
                j.cancel()
                j.finished.wait(30)
            shutil.rmtree(j.dir, ignore_errors=True)
            self.cleaned_jobs.add(j.job_id)
        if clean_fn:
            shutil.rmtree(os.path.join(self._dir, "fn"), ignore_errors=True)
            os.makedirs(os.path.join(self._dir, "fn"), exist_ok=True)

    def _plot_on_bus(self, job: _Job) -> None:
        """Write job's timeline to its plot file through submit serve (jobs
        on a bus do not write one as they end)."""
        bus = self._bus()
        if not (bus or self._warm_mode()) or not self._serve:
            return
        session = self._session_for(bus)
        if session is None:
            return
        code, err = session.run(["plot", job.skein_id, "-o", job.plot_file])
        if code != 0:
            import warnings
            warnings.warn(f"skeinrun: no plot of job {job.job_id}: {err.strip()}", RuntimeWarning, stacklevel=3)

    def job_summary(self, cloud_objects_n: int = 0) -> None:
        """Not kept by Skein: see plot() and submit's --status-file."""

    @property
    def warm_bus(self) -> str | None:
        """None: the warm installation runs inside the executor's submit
        serve process, on an in-process bus that nothing else reaches."""
        return None


class _LazyFutures(FuturesList):
    """The futures of a job over storage iterdata: one per object or chunk,
    which the coordinator lists; known once the job has ended, so reading
    this list waits for the job."""

    def __init__(self, job: _Job, executor: FunctionExecutor):
        super().__init__([], executor)
        self._job = job
        self._filled = False

    def _fill(self):
        if not self._filled:
            self._job.finished.wait()
            list.extend(self, self._job.futures + self._job.reduce_futures)
            ids = {id(f) for f in self.executor.futures}
            self.executor.futures.extend(f for f in list.__iter__(self) if id(f) not in ids)
            self._filled = True

    def __iter__(self):
        self._fill()
        return list.__iter__(self)

    def __len__(self):
        self._fill()
        return list.__len__(self)

    def __getitem__(self, i):
        self._fill()
        return list.__getitem__(self, i)


def _check_chunking(chunksize: Any, obj_newline: Any) -> None:
    if chunksize not in (None, 1):
        raise ConfigError("chunksize: no meaning in Skein (one task per iterdata element; tasks are batched on the "
                          "bus instead)")
    if obj_newline != "\n":
        raise ConfigError("obj_newline: Skein aligns chunks on '\\n' only")


def _chunk_flags(size: Any, number: Any, storage: bool) -> list[str]:
    if size is None and number is None:
        return []
    if not storage:
        raise ValueError("obj_chunk_size and obj_chunk_number split storage objects: the iterdata must name storage "
                         "(cos://, s3://, local://) and the function take obj")
    if number is not None:
        return ["--chunk-n", str(int(number))]  # Lithops: chunk_number wins over chunk_size
    return ["--chunk-size", str(int(size))]


def _read_config_file(path: str) -> dict:
    with open(path) as f:
        text = f.read()
    try:
        import yaml  # a Lithops config file is YAML
        data = yaml.safe_load(text)
    except ImportError:
        try:
            data = json.loads(text)
        except ValueError:
            raise ConfigError(f"{path}: a YAML config file needs PyYAML (pip install pyyaml); JSON is read without it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: want a mapping of settings")
    return data

