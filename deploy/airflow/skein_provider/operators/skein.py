"""The Skein operators: one call, a map, a map-reduce of Python functions (or Go built-ins).

Each operator builds a ``submit call|map|mapreduce`` command, runs it through
SkeinHook and pushes the result to XCom. With ``deferrable=True`` it submits
with ``--no-wait`` and defers to SkeinJobTrigger, so no worker slot is held
while the functions run; on resume it fetches the result with ``submit result``.

Every parameter of the Lithops / Cloudbutton / IBM-PyWren plugin's tables is
accepted, under each version's name (see ALIASES), so that an old DAG runs
after changing its imports only. The old class names are kept as aliases at
the bottom of this module.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Mapping, Sequence

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from skein_provider.config import Translated, translate
from skein_provider.functions import FunctionRef, resolve, resolve_includes
from skein_provider.hooks.skein import SkeinHook, _mask, error_for
from skein_provider.triggers.skein import SkeinJobTrigger, trigger_kwargs, within

# Old names (from the IBM-PyWren, Cloudbutton and Lithops plugins, typos
# included) -> the name used here.
ALIASES: dict[str, str] = {
    "iterdata_form_task": "iterdata_from_task",
    "extra_args": "extra_params",
    "reduce_funtion": "reduce_function",
    "remote_invoker": "remote_invocation",
    "lithops_config": "config",
    "cloudbutton_engine_config": "config",
    "pywren_executor_config": "config",
    "get_result": "fetch_result",
}

# Executor settings of the Lithops plugin that Skein takes from its own
# configuration (the bus and the pools decide them): accepted so that old DAGs
# parse, logged as ignored.
IGNORED_LEGACY = ("type", "backend", "storage", "runtime", "rabbitmq_monitor", "workers", "remote_invocation_groups")

_UNSET: Any = object()


def _take_aliases(cls_name: str, kwargs: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """Move aliases in kwargs to their canonical names in explicit (name -> value
    given under the canonical name, or _UNSET). Conflicting values are an error."""
    for old, new in ALIASES.items():
        if old not in kwargs or new not in explicit:
            continue  # absent, or an alias of a parameter another class in the chain takes
        value = kwargs.pop(old)
        if explicit[new] is not _UNSET and explicit[new] != value:
            raise AirflowException(f"{cls_name}: {old} is the old name of {new}; pass only one of them")
        explicit[new] = value
    if "async_invoke" in kwargs and "wait_for_result" in explicit:
        value = bool(kwargs.pop("async_invoke"))
        if explicit.get("wait_for_result", _UNSET) is not _UNSET and explicit["wait_for_result"] == value:
            raise AirflowException(f"{cls_name}: async_invoke={value} contradicts wait_for_result={explicit['wait_for_result']}")
        explicit["wait_for_result"] = not value
    return explicit


def _is_template(v: Any) -> bool:
    return isinstance(v, str) and "{{" in v


def _positive_int(cls_name: str, name: str, v: Any) -> None:
    if v is None or _is_template(v):
        return
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise AirflowException(f"{cls_name}: {name} must be a positive integer, got {v!r}")


def _literal(v: Any, name: str, want: tuple[type, ...]) -> Any:
    """A rendered template field: strings holding a JSON or Python literal are parsed."""
    if isinstance(v, str) and str not in want:
        s = v.strip()
        try:
            v = json.loads(s)
        except ValueError:
            try:
                v = ast.literal_eval(s)
            except (ValueError, SyntaxError) as e:
                raise AirflowException(f"{name} rendered to {s[:200]!r}, which is not a {want[0].__name__}") from e
    if isinstance(v, tuple):
        v = list(v)
    if not isinstance(v, want):
        raise AirflowException(f"{name} must be a {' or '.join(t.__name__ for t in want)}, got {type(v).__name__}")
    return v


class SkeinBaseOperator(BaseOperator):
    """Parameters common to the Skein operators (the seeds' inherited parameters).

    :param config: Skein config file path, or (not in deferrable mode) a dict: Skein's config
        keys, or a Lithops config translated (see skein_provider.config), written to a
        private temporary file for the call. Aliases: lithops_config,
        cloudbutton_engine_config, pywren_executor_config.
    :param wait_for_result: wait for the job to end (default True); False submits with
        --no-wait and pushes the job id. Alias: async_invoke (inverted).
    :param fetch_result: download the result (default True). Alias: get_result.
    :param clean_data: delete the job's data from storage when done (default False).
    :param extra_env: environment variables for the functions' runtime.
    :param runtime_memory: runtime memory in MB (default from Skein's config).
    :param timeout: seconds the whole job has before it times out (default from Skein's config).
    :param task_timeout: seconds one function call (one attempt of one task) has before it
        times out and is retried or fails (the old plugin's per-function ``timeout``);
        default: the job's timeout.
    :param include_modules: more modules or paths to ship with the function: module names
        and relative paths are looked up in the DAG file's folder, then on the Python path.
    :param exclude_modules: modules or paths not to ship.
    :param function_retries: retries of a failed function (submit --retries).
    :param deferrable: defer to the triggerer while the job runs.
    :param min_deferral: with deferrable=True, the least seconds between the deferral and
        the trigger's event (default 5). Airflow 3.3 fails a deferred task whose trigger
        fires before the scheduler has handled the executor's report of the deferral;
        raise it where that report can be late (a busy scheduler, an SQLite metadata DB).
    :param skein_conn_id: the skein connection (default skein_default; optional).
    :param submit_path: the submit binary (default: the connection's, SKEIN_SUBMIT, PATH).
    """

    ui_color = "#c4daff"
    template_fields: Sequence[str] = ("extra_env",)

    def __init__(
        self,
        *,
        config: str | dict[str, Any] | None = _UNSET,
        wait_for_result: bool = _UNSET,
        fetch_result: bool = _UNSET,
        clean_data: bool = False,
        extra_env: dict[str, str] | None = None,
        runtime_memory: int | None = None,
        timeout: int | float | None = None,
        task_timeout: int | float | None = None,
        include_modules: list[str] | str | None = None,
        exclude_modules: list[str] | str | None = None,
        function_retries: int | None = None,
        log_level: str | None = None,
        deferrable: bool = False,
        min_deferral: int | float | None = None,
        skein_conn_id: str | None = SkeinHook.default_conn_name,
        submit_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        cls_name = type(self).__name__
        config_param = next((k for k in ("lithops_config", "cloudbutton_engine_config", "pywren_executor_config")
                             if k in kwargs), "config")
        common = {"config": config, "wait_for_result": wait_for_result, "fetch_result": fetch_result}
        common = _take_aliases(cls_name, kwargs, common)
        ignored = {k: kwargs.pop(k) for k in IGNORED_LEGACY if k in kwargs}
        super().__init__(**kwargs)
        self._ignored_legacy = ignored
        config = common["config"]
        self.config = None if config is _UNSET else config
        self.wait_for_result = True if common["wait_for_result"] is _UNSET else bool(common["wait_for_result"])
        self.fetch_result = True if common["fetch_result"] is _UNSET else bool(common["fetch_result"])
        self.clean_data = bool(clean_data)
        self.extra_env = extra_env
        self.runtime_memory = runtime_memory
        self.timeout = timeout
        self.task_timeout = task_timeout
        self.include_modules = include_modules
        self.exclude_modules = exclude_modules
        self.function_retries = function_retries
        self.log_level = log_level
        self.deferrable = bool(deferrable)
        self.min_deferral = min_deferral
        self.skein_conn_id = skein_conn_id
        self.submit_path = submit_path
        self._hook: SkeinHook | None = None
        self._validate_common(cls_name)
        # A config dict (Skein's or Lithops') is checked and translated when the DAG
        # is parsed: a key with no meaning in Skein is a DAG import error.
        self._translated: Translated | None = None
        if isinstance(self.config, dict):
            try:
                self._translated = translate(self.config, config_param)
            except AirflowException as e:
                raise type(e)(f"{cls_name}: {e}") from None

    # -- validation -----------------------------------------------------------

    def _validate_common(self, cls_name: str) -> None:
        if self.config is not None and not isinstance(self.config, (str, dict)):
            raise AirflowException(f"{cls_name}: config must be a path to a Skein config file or a dict")
        if self.deferrable and isinstance(self.config, dict):
            raise AirflowException(
                f"{cls_name}: deferrable=True needs config as a file path (or a skein connection): "
                "the triggerer cannot be handed a config dict"
            )
        if self.deferrable and not self.wait_for_result:
            raise AirflowException(
                f"{cls_name}: deferrable=True waits for the job in the triggerer; it makes no sense with "
                "wait_for_result=False (async_invoke=True), which returns the job id at once"
            )
        _positive_int(cls_name, "runtime_memory", self.runtime_memory)
        self._trigger_kwargs = trigger_kwargs(cls_name, self.min_deferral)
        if self.function_retries is not None and (not isinstance(self.function_retries, int) or self.function_retries < 0):
            raise AirflowException(f"{cls_name}: function_retries must be an integer >= 0, got {self.function_retries!r}")
        for name in ("timeout", "task_timeout"):
            v = getattr(self, name)
            if v is not None and not _is_template(v):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                    raise AirflowException(f"{cls_name}: {name} must be a positive number of seconds, got {v!r}")
        if (self.timeout is not None and self.task_timeout is not None and not _is_template(self.timeout)
                and not _is_template(self.task_timeout) and self.task_timeout > self.timeout):
            raise AirflowException(
                f"{cls_name}: task_timeout={self.task_timeout} is longer than the job's timeout={self.timeout}; "
                "a function cannot run longer than its job"
            )
        if self.extra_env is not None and not isinstance(self.extra_env, (dict, str)):
            raise AirflowException(f"{cls_name}: extra_env must be a dict of environment variables")
        for name in ("include_modules", "exclude_modules"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (str, list, tuple)):
                raise AirflowException(f"{cls_name}: {name} must be a list of module names or paths")

    def _dag_file(self) -> str | None:
        try:
            dag = self.get_dag()
        except Exception:
            return None
        return getattr(dag, "fileloc", None) if dag is not None else None

    def _resolve(self, fn: Any, param: str) -> FunctionRef:
        return resolve(fn, param, self._dag_file())

    def _fn_arg(self, ref: FunctionRef) -> str:
        """--function's argument: the reference, or for a function shipped by value
        py:@PATH of its pickle in a private directory removed after the submit
        (submit ships the file with the job's modules)."""
        if ref.pickled is None:
            return ref.ref
        if getattr(self, "_pickle_dir", None) is None:
            self._pickle_dir = tempfile.mkdtemp(prefix="skein-fn-")
        path = os.path.join(self._pickle_dir, ref.file)
        with open(path, "wb") as f:
            f.write(ref.pickled)
        return "py:@" + path

    def _drop_pickles(self) -> None:
        d = getattr(self, "_pickle_dir", None)
        if d:
            shutil.rmtree(d, ignore_errors=True)
            self._pickle_dir = None

    # -- building the command -----------------------------------------------------

    @property
    def hook(self) -> SkeinHook:
        if self._hook is None:
            self._hook = SkeinHook(skein_conn_id=self.skein_conn_id, submit_path=self.submit_path)
        return self._hook

    def _common_flags(self, refs: Sequence[FunctionRef], config_path: str | None) -> list[str]:
        flags: list[str] = []
        if config_path:
            flags += ["--config", config_path]
        if self.timeout is not None:
            flags += ["--timeout", str(self.timeout)]
        tr = self._translated
        task_timeout = self.task_timeout if self.task_timeout is not None else (tr.task_timeout if tr else None)
        if task_timeout is not None:
            flags += ["--task-timeout", str(task_timeout)]
        if tr and tr.workers:
            flags += ["--workers", str(tr.workers)]
        if self.runtime_memory is not None:
            flags += ["--runtime-memory", str(self.runtime_memory)]
        if self.function_retries is not None:
            flags += ["--retries", str(self.function_retries)]
        if not self.wait_for_result or self.deferrable:
            flags.append("--no-wait")
        elif not self.fetch_result:
            flags.append("--no-fetch")
        if self.clean_data:
            flags.append("--clean")
        env = _literal(self.extra_env, "extra_env", (dict,)) if self.extra_env else {}
        for k, v in env.items():
            flags += ["--env", f"{k}={v}"]
        seen: list[str] = []
        for ref in refs:
            for p in ref.ship:
                if p not in seen:
                    seen.append(p)
        for m in resolve_includes(_as_list(self.include_modules), self._dag_file()):
            if m not in seen:
                seen.append(m)
        for m in seen:
            flags += ["--include-modules", m]
        for m in _as_list(self.exclude_modules):
            flags += ["--exclude-modules", m]
        log_level = self.log_level or (tr.log_level if tr else None)
        if log_level:
            flags += ["--log-level", str(log_level)]
        return flags

    def build(self, context: Mapping[str, Any] | None) -> tuple[str, list[str], Any]:
        """(mode, flags without --config, payload) for this run."""
        raise NotImplementedError

    # -- running -----------------------------------------------------------------

    def execute(self, context: Mapping[str, Any]) -> Any:
        for k in self._ignored_legacy:
            self.log.warning("%s is a Lithops executor setting; Skein takes it from its own configuration and ignores it here", k)
        try:
            return self._execute(context)
        finally:
            self._drop_pickles()

    def _execute(self, context: Mapping[str, Any]) -> Any:
        mode, flags, payload = self.build(context)
        config = self.config
        if self._translated is not None:
            for secret in self._translated.secrets:
                _mask(secret)
            self.log.info("config dict: %s", self._translated.describe())
            config = self._translated.config
        with _config_file(config) as config_path:
            if config_path:
                flags = ["--config", config_path, *flags]
            value = self.hook.submit(mode, flags, payload)
        if not self.wait_for_result:
            self.log.info("submitted Skein job %s (not waiting)", value)
            context["ti"].xcom_push(key="skein_job_id", value=value)
            return value
        if self.deferrable:
            job_id = value
            if not isinstance(job_id, str) or not job_id:
                raise AirflowException(f"submit --no-wait printed {job_id!r}, not a job id")
            context["ti"].xcom_push(key="skein_job_id", value=job_id)
            self.log.info("submitted Skein job %s; deferring until it ends", job_id)
            self.defer(
                trigger=SkeinJobTrigger(job_id=job_id, skein_conn_id=self.skein_conn_id, submit_path=self.submit_path,
                                        **within(self._trigger_kwargs, self.execution_timeout.total_seconds()
                                                 if self.execution_timeout else None)),
                method_name="execute_complete",
            )
        return value

    def execute_complete(self, context: Mapping[str, Any], event: dict[str, Any] | None = None) -> Any:
        """Resumes after the trigger fired: fetch and return the result."""
        if not event:
            raise AirflowException("the Skein trigger returned no event")
        job_id = event.get("job_id")
        if event.get("status") != "success":
            rc = event.get("exit_code")
            if rc is None:
                raise AirflowException(f"waiting for Skein job {job_id} failed: {event.get('message')}")
            raise error_for(int(rc), str(event.get("message") or ""), f"Skein job {job_id}")
        if not self.fetch_result:
            return job_id
        return self.hook.result(str(job_id))

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.kill()

    def _pull(self, context: Mapping[str, Any], task_id: str) -> Any:
        return context["ti"].xcom_pull(task_ids=task_id)


def _as_list(v: Any) -> list[str]:
    if not v:
        return []
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return [str(p) for p in v]


class _config_file:
    """--config for a config given as a path (as is) or a dict (a private temporary
    file removed afterwards)."""

    def __init__(self, config: Any):
        self.config = config
        self.path: str | None = None

    def __enter__(self) -> str | None:
        if self.config is None:
            return None
        if isinstance(self.config, str):
            return self.config
        fd, self.path = tempfile.mkstemp(prefix="skein-config-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.config, f)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass


class SkeinCallAsyncOperator(SkeinBaseOperator):
    """Invokes one function.

    :param func: the function: a Python callable from a module other than the DAG file,
        ``py:module:function``, or a Go built-in name.
    :param data: keyword arguments (dict) or positional arguments (list). Templated.
    :param data_from_task: {argument name: upstream task id}: each argument is the upstream
        task's XCom return value (for a list ``data``, the values are appended).
    """

    template_fields: Sequence[str] = ("data", "extra_env")

    def __init__(
        self,
        *,
        func: Callable[..., Any] | str | None = None,
        data: dict[str, Any] | list[Any] | str | None = None,
        data_from_task: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.func = func
        self.data = {} if data is None else data
        self.data_from_task = data_from_task
        name = type(self).__name__
        if func is None:
            raise AirflowException(f"{name}: func is required (a Python callable or a function reference)")
        self._func_ref = resolve(func, "func", self._dag_file())
        if not isinstance(self.data, (dict, list, tuple, str)):
            raise AirflowException(f"{name}: data must be a dict of keyword arguments or a list of positional ones")
        if data_from_task is not None:
            if not isinstance(data_from_task, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data_from_task.items()
            ):
                raise AirflowException(f"{name}: data_from_task must be a dict {{argument name: upstream task id}}")

    def build(self, context: Mapping[str, Any] | None) -> tuple[str, list[str], Any]:
        ref = self._resolve(self.func, "func")
        data = _literal(self.data, "data", (dict, list))
        # A fresh container per run: the operator's own data is never changed, so
        # values pulled from upstream tasks do not pile up across runs.
        data = dict(data) if isinstance(data, dict) else list(data)
        for arg, task_id in (self.data_from_task or {}).items():
            value = self._pull(context, task_id) if context is not None else None
            if isinstance(data, list):
                data.append(value)
            else:
                data[arg] = value
        flags = ["--function", self._fn_arg(ref), "--data-from", "-", *self._common_flags([ref], None)]
        return "call", flags, data


class SkeinMapOperator(SkeinBaseOperator):
    """Invokes map_function once per element of map_iterdata (or of an upstream task's list).

    :param map_function: the function (callable, ``py:module:function`` or a Go built-in name).
    :param map_iterdata: the list to map over (templated); a storage URL element
        (``local:///dir/``, ``s3://bucket/prefix/``, ``cos://...``) expands to one task per object or chunk.
    :param iterdata_from_task: an upstream task id whose XCom list is the iterdata, or
        {argument name: task id} to pass each element as that keyword argument. Alias: iterdata_form_task.
    :param extra_params: keyword arguments added to every call. Alias: extra_args.
    :param chunk_size: split each object into chunks of this many bytes.
    :param chunk_n: split each object into this many chunks.
    :param remote_invocation: have a function invoke the map's functions (Lithops' remote invoker).
    :param invoke_pool_threads: threads that publish the tasks.
    """

    template_fields: Sequence[str] = ("map_iterdata", "extra_params", "extra_env")
    _mode = "map"

    def __init__(
        self,
        *,
        map_function: Callable[..., Any] | str | None = None,
        map_iterdata: list[Any] | str | None = None,
        iterdata_from_task: str | dict[str, str] | None = _UNSET,
        extra_params: dict[str, Any] | str | None = _UNSET,
        chunk_size: int | None = None,
        chunk_n: int | None = None,
        remote_invocation: bool = _UNSET,
        invoke_pool_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        mine = _take_aliases(
            name,
            kwargs,
            {"iterdata_from_task": iterdata_from_task, "extra_params": extra_params, "remote_invocation": remote_invocation},
        )
        self._extra_init(name, kwargs)
        super().__init__(**kwargs)
        iterdata_from_task = None if mine["iterdata_from_task"] is _UNSET else mine["iterdata_from_task"]
        extra_params = None if mine["extra_params"] is _UNSET else mine["extra_params"]
        remote_invocation = False if mine["remote_invocation"] is _UNSET else bool(mine["remote_invocation"])
        self.map_function = map_function
        self.map_iterdata = map_iterdata
        self.iterdata_from_task = iterdata_from_task
        self.extra_params = extra_params
        self.chunk_size = chunk_size
        self.chunk_n = chunk_n
        self.remote_invocation = remote_invocation
        self.invoke_pool_threads = invoke_pool_threads
        if map_function is None:
            raise AirflowException(f"{name}: map_function is required (a Python callable or a function reference)")
        self._map_ref = resolve(map_function, "map_function", self._dag_file())
        if map_iterdata is None and iterdata_from_task is None:
            raise AirflowException(f"{name}: set map_iterdata or iterdata_from_task (neither was given)")
        if map_iterdata is not None and not isinstance(map_iterdata, (list, tuple, str)):
            raise AirflowException(f"{name}: map_iterdata must be a list, got {type(map_iterdata).__name__}")
        if iterdata_from_task is not None:
            if isinstance(iterdata_from_task, dict):
                if len(iterdata_from_task) != 1 or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in iterdata_from_task.items()
                ):
                    raise AirflowException(
                        f"{name}: iterdata_from_task must be a task id or a one-entry dict {{argument name: task id}}"
                    )
            elif not isinstance(iterdata_from_task, str):
                raise AirflowException(f"{name}: iterdata_from_task must be a task id or {{argument name: task id}}")
        if extra_params is not None and not isinstance(extra_params, (dict, str)):
            raise AirflowException(f"{name}: extra_params must be a dict of keyword arguments")
        if chunk_size is not None and chunk_n is not None:
            raise AirflowException(f"{name}: chunk_size and chunk_n are exclusive; pass one of them")
        _positive_int(name, "chunk_size", chunk_size)
        _positive_int(name, "chunk_n", chunk_n)
        _positive_int(name, "invoke_pool_threads", invoke_pool_threads)

    def _extra_init(self, name: str, kwargs: dict[str, Any]) -> None:
        """Hook for subclasses to take their own aliases before BaseOperator sees kwargs."""

    def _iterdata(self, context: Mapping[str, Any] | None) -> list[Any]:
        src = self.iterdata_from_task
        if src is not None and context is not None:
            if isinstance(src, dict):
                ((arg, task_id),) = src.items()
                values = self._pull(context, task_id)
                if values is None:
                    raise AirflowException(f"iterdata_from_task: task {task_id!r} pushed no XCom value to map over")
                values = _literal(values, f"the XCom of {task_id}", (list,))
                return [{arg: v} for v in values]
            values = self._pull(context, src)
            if values is None:
                raise AirflowException(f"iterdata_from_task: task {src!r} pushed no XCom value to map over")
            return list(_literal(values, f"the XCom of {src}", (list,)))
        if self.map_iterdata is None:
            raise AirflowException("map_iterdata is not set and there is no context to pull iterdata_from_task from")
        return list(_literal(self.map_iterdata, "map_iterdata", (list,)))

    def _map_flags(self, ref: FunctionRef) -> list[str]:
        flags = ["--function", self._fn_arg(ref), "--iterdata-from", "-"]
        if self.extra_params:
            flags += ["--extra-params", json.dumps(_literal(self.extra_params, "extra_params", (dict,)))]
        if self.chunk_size is not None:
            flags += ["--chunk-size", str(self.chunk_size)]
        if self.chunk_n is not None:
            flags += ["--chunk-n", str(self.chunk_n)]
        if self.remote_invocation:
            flags.append("--remote-invocation")
        if self.invoke_pool_threads is not None:
            flags += ["--invoke-pool-threads", str(self.invoke_pool_threads)]
        return flags

    def build(self, context: Mapping[str, Any] | None) -> tuple[str, list[str], Any]:
        ref = self._resolve(self.map_function, "map_function")
        iterdata = self._iterdata(context)
        return "map", [*self._map_flags(ref), *self._common_flags([ref], None)], iterdata


class SkeinMapReduceOperator(SkeinMapOperator):
    """A map, then reduce_function over the list of map results.

    Everything of SkeinMapOperator, plus:

    :param reduce_function: the reducer (callable, ``py:module:function`` or a Go built-in
        such as sum or product). Alias: reduce_funtion.
    :param map_runtime_memory: memory in MB of the map functions.
    :param reduce_runtime_memory: memory in MB of the reducer.
    :param reducer_one_per_object: one reducer per input object (after the partitioner).
    :param reducer_wait_local: run the reducer in the submitting process.
    :param reduce_mode: "streaming" (results fed to the reducer as they land) or "barrier".
    """

    def __init__(
        self,
        *,
        reduce_function: Callable[..., Any] | str | None = _UNSET,
        map_runtime_memory: int | None = None,
        reduce_runtime_memory: int | None = None,
        reducer_one_per_object: bool = False,
        reducer_wait_local: bool = False,
        reduce_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        name = type(self).__name__
        mine = _take_aliases(name, kwargs, {"reduce_function": reduce_function})
        super().__init__(**kwargs)
        reduce_function = None if mine["reduce_function"] is _UNSET else mine["reduce_function"]
        self.reduce_function = reduce_function
        self.map_runtime_memory = map_runtime_memory
        self.reduce_runtime_memory = reduce_runtime_memory
        self.reducer_one_per_object = bool(reducer_one_per_object)
        self.reducer_wait_local = bool(reducer_wait_local)
        self.reduce_mode = reduce_mode
        if reduce_function is None:
            raise AirflowException(f"{name}: reduce_function is required (a Python callable or a function reference)")
        self._reduce_ref = resolve(reduce_function, "reduce_function", self._dag_file())
        _positive_int(name, "map_runtime_memory", map_runtime_memory)
        _positive_int(name, "reduce_runtime_memory", reduce_runtime_memory)
        if reduce_mode is not None and reduce_mode not in ("streaming", "barrier"):
            raise AirflowException(f"{name}: reduce_mode must be 'streaming' or 'barrier', got {reduce_mode!r}")

    def build(self, context: Mapping[str, Any] | None) -> tuple[str, list[str], Any]:
        ref = self._resolve(self.map_function, "map_function")
        red = self._resolve(self.reduce_function, "reduce_function")
        iterdata = self._iterdata(context)
        flags = [*self._map_flags(ref), "--reduce-function", self._fn_arg(red)]
        if self.reducer_one_per_object:
            flags.append("--reducer-one-per-object")
        if self.reducer_wait_local:
            flags.append("--reducer-wait-local")
        if self.reduce_mode:
            flags += ["--reduce-mode", self.reduce_mode]
        if self.map_runtime_memory is not None:
            flags += ["--map-runtime-memory", str(self.map_runtime_memory)]
        if self.reduce_runtime_memory is not None:
            flags += ["--reduce-runtime-memory", str(self.reduce_runtime_memory)]
        return "mapreduce", [*flags, *self._common_flags([ref, red], None)], iterdata


# The class names of the IBM-PyWren, Cloudbutton and Lithops plugins (including
# the names their examples used), so that an old DAG runs after an import change.
LithopsCallAsyncOperator = SkeinCallAsyncOperator
LithopsMapOperator = SkeinMapOperator
LithopsMapReduceOperator = SkeinMapReduceOperator
CloudbuttonCallAsyncOperator = SkeinCallAsyncOperator
CloudbuttonAsyncOperator = SkeinCallAsyncOperator
CloudbuttonMapOperator = SkeinMapOperator
CloudbuttonMapReduceOperator = SkeinMapReduceOperator
IbmPyWrenCallAsyncOperator = SkeinCallAsyncOperator
IbmPyWrenMapOperator = SkeinMapOperator
IbmPyWrenMapReduceOperator = SkeinMapReduceOperator
IbmCloudFunctionsCallAsyncOperator = SkeinCallAsyncOperator
IbmCloudFunctionsMapOperator = SkeinMapOperator
IbmCloudFunctionsMapReduceOperator = SkeinMapReduceOperator
