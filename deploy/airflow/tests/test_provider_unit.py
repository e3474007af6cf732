"""What the provider hands to submit, checked against a stand-in binary that
records its argv, environment and stdin: argument building for every
operator parameter and alias, credentials in the environment only, exit
codes, XCom handling across runs, deferral. Also the construction-time
validation. None of this needs the real submit binary; the acceptance tests
in test_acceptance.py run the same operators against it."""

import asyncio
import json
import logging
import os
import stat
import sys
import time

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

import my_functions
from conftest import EXAMPLES, dag_file, load_dag, ti_states, xcom
from skein_provider.functions import FunctionError, resolve
from skein_provider.hooks.skein import (
    SkeinHook,
    SkeinJobFailedError,
    SkeinTimeoutError,
    SkeinUsageError,
)
from skein_provider.operators import skein as ops
from skein_provider.sensors import SkeinJobSensor
from skein_provider.triggers.skein import SkeinJobTrigger

MYF = os.path.join(EXAMPLES, "my_functions.py")
STANDIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin_submit.py")
BOOKS = os.path.join(EXAMPLES, "data", "books")


class Standin:
    def __init__(self, path, record):
        self.path = path
        self.record = record

    def records(self):
        if not os.path.exists(self.record):
            return []
        with open(self.record) as f:
            return [json.loads(line) for line in f]


@pytest.fixture
def standin(tmp_path, monkeypatch):
    src = os.path.join(os.path.dirname(__file__), "standin_submit.py")
    exe = tmp_path / "submit"
    exe.write_text(f"#!{sys.executable}\n" + open(src).read())
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("SKEIN_SUBMIT", str(exe))
    monkeypatch.setenv("STANDIN_RECORD", str(record))
    for k in ("STANDIN_EXIT", "STANDIN_STDERR", "STANDIN_STDOUT", "STANDIN_RESULT", "AIRFLOW_CONN_SKEIN_DEFAULT"):
        monkeypatch.delenv(k, raising=False)
    return Standin(str(exe), str(record))


class FakeTI:
    """The two TaskInstance methods the operators call, for running execute() directly."""

    def __init__(self, xcoms=None):
        self.xcoms = xcoms or {}
        self.pushed = {}

    def xcom_pull(self, task_ids, key="return_value"):
        return self.xcoms.get(task_ids)

    def xcom_push(self, key, value):
        self.pushed[key] = value


def run(op, xcoms=None):
    ti = FakeTI(xcoms)
    return op.execute({"ti": ti}), ti


# -- argv and stdin for each operator ---------------------------------------------


def test_call_argv_ships_the_module_and_sends_data_on_stdin(standin):
    op = ops.SkeinCallAsyncOperator(task_id="t", func=my_functions.add, data={"x": 1, "y": 3})
    out, _ = run(op)
    (rec,) = standin.records()
    assert rec["argv"] == ["call", "--function", "py:my_functions:add", "--data-from", "-", "--include-modules", MYF]
    assert rec["stdin"] == {"x": 1, "y": 3}
    assert out == {"argv": rec["argv"], "stdin": {"x": 1, "y": 3}}


def test_map_argv_with_every_parameter(standin):
    op = ops.SkeinMapOperator(
        task_id="t",
        map_function=my_functions.add,
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        chunk_n=4,
        remote_invocation=True,
        invoke_pool_threads=16,
        config="/etc/skein.yaml",
        fetch_result=False,
        clean_data=True,
        extra_env={"A": "1"},
        runtime_memory=512,
        timeout=30,
        task_timeout=5,
        include_modules=["standin_submit", BOOKS],
        exclude_modules="numpy,pandas",
        function_retries=2,
        log_level="debug",
    )
    run(op)
    (rec,) = standin.records()
    assert rec["argv"] == [
        "map", "--config", "/etc/skein.yaml",
        "--function", "py:my_functions:add", "--iterdata-from", "-", "--extra-params", '{"y": 1}',
        "--chunk-n", "4", "--remote-invocation", "--invoke-pool-threads", "16",
        "--timeout", "30", "--task-timeout", "5", "--runtime-memory", "512", "--retries", "2", "--no-fetch", "--clean",
        "--env", "A=1",
        "--include-modules", MYF, "--include-modules", STANDIN, "--include-modules", BOOKS,
        "--exclude-modules", "numpy", "--exclude-modules", "pandas", "--log-level", "debug",
    ]
    assert rec["stdin"] == [1, 2, 3]


def test_mapreduce_argv_with_builtins_and_reduce_flags(standin):
    op = ops.SkeinMapReduceOperator(
        task_id="t",
        map_function="add",
        reduce_function="py:my_functions:mult",
        map_iterdata=[1, 2, 3],
        extra_params={"y": 1},
        chunk_size=1 << 20,
        map_runtime_memory=256,
        reduce_runtime_memory=1024,
        reducer_one_per_object=True,
        reducer_wait_local=True,
        reduce_mode="barrier",
    )
    run(op)
    (rec,) = standin.records()
    assert rec["argv"] == [
        "mapreduce", "--function", "add", "--iterdata-from", "-", "--extra-params", '{"y": 1}',
        "--chunk-size", "1048576", "--reduce-function", "py:my_functions:mult",
        "--reducer-one-per-object", "--reducer-wait-local", "--reduce-mode", "barrier",
        "--map-runtime-memory", "256", "--reduce-runtime-memory", "1024",
    ]


def test_config_dict_goes_to_a_private_file_removed_afterwards(standin, monkeypatch):
    seen = {}
    real = ops._config_file.__enter__

    def spy(self):
        p = real(self)
        seen["path"] = p
        seen["mode"] = stat.S_IMODE(os.stat(p).st_mode)
        seen["content"] = json.load(open(p))
        return p

    monkeypatch.setattr(ops._config_file, "__enter__", spy)
    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={"x": 1, "y": 2}, lithops_config={"bus": "nats://h"})
    run(op)
    (rec,) = standin.records()
    assert rec["argv"][1:3] == ["--config", seen["path"]]
    assert seen["content"] == {"bus": "nats://h"} and seen["mode"] == 0o600
    assert not os.path.exists(seen["path"])


# -- the connection: environment, never the command line, never the log ------------


def test_connection_settings_travel_in_the_environment_only(standin, monkeypatch, caplog, capfd):
    conn = {
        "conn_type": "skein",
        "host": "nats://bus.example:4222",
        "login": "alice",
        "password": "s3cr3t-pw",
        "extra": {
            "config": "/etc/skein/config.yaml",
            "storage": {"endpoint": "http://127.0.0.1:7070", "artifacts": "s3://skein/jobs/",
                        "access_key_id": "AKIA-ID", "secret_access_key": "very-secret-key"},
            "env": {"STANDIN_PROBE": "yes"},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_SKEIN_DEFAULT", json.dumps(conn))
    caplog.set_level(logging.DEBUG)
    hook = SkeinHook()
    hook.run(["call", "--function", "add", "--data-from", "-"], stdin=b'{"x":1,"y":2}')
    (rec,) = standin.records()
    env = rec["env"]
    assert env["SKEIN_BUS"] == "nats://alice:s3cr3t-pw@bus.example:4222"
    assert env["SKEIN_CONFIG"] == "/etc/skein/config.yaml"
    assert env["SKEIN_STORAGE_ARTIFACTS"] == "s3://skein/jobs/"
    # The S3 names of the keys are taken for Skein's.
    assert env["SKEIN_STORAGE_SECRET_KEY"] == "very-secret-key"
    assert env["SKEIN_STORAGE_ACCESS_KEY"] == "AKIA-ID"
    assert env["STANDIN_PROBE"] == "yes"
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    for secret in ("s3cr3t-pw", "very-secret-key"):
        assert not any(secret in a for a in rec["argv"])
        assert secret not in logged
    assert "environment set: SKEIN_BUS, SKEIN_CONFIG" in logged  # the names are logged


def test_connection_host_and_port_make_a_bus_url(standin, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SKEIN_DEFAULT", json.dumps(
        {"conn_type": "skein", "host": "10.0.0.5", "port": 5672, "extra": {"bus_scheme": "amqp"}}))
    SkeinHook().run(["status", "j"])
    assert standin.records()[0]["env"]["SKEIN_BUS"] == "amqp://10.0.0.5:5672"


def test_no_connection_falls_back_to_submit_defaults(standin, monkeypatch):
    monkeypatch.delenv("SKEIN_BUS", raising=False)
    SkeinHook().run(["status", "j"])
    assert "SKEIN_BUS" not in standin.records()[0]["env"]


def test_a_named_connection_that_does_not_exist_is_an_error(standin):
    with pytest.raises(AirflowException, match="connection 'nope' does not exist"):
        SkeinHook(skein_conn_id="nope").run(["status", "j"])


def test_submit_path_from_the_connection(standin, monkeypatch, tmp_path):
    monkeypatch.delenv("SKEIN_SUBMIT")
    monkeypatch.setenv("AIRFLOW_CONN_SKEIN_DEFAULT", json.dumps({"conn_type": "skein", "extra": {"submit_path": standin.path}}))
    assert SkeinHook().settings().submit_path == standin.path
    monkeypatch.setenv("AIRFLOW_CONN_SKEIN_DEFAULT", json.dumps({"conn_type": "skein", "extra": {"submit_path": str(tmp_path / "none")}}))
    with pytest.raises(AirflowException, match="not an executable"):
        SkeinHook().settings()


# -- exit codes ---------------------------------------------------------------------------


TRACEBACK = 'Traceback (most recent call last):\n  File "my_functions.py", line 32, in boom\nValueError: boom: cannot handle 1'


@pytest.mark.parametrize(
    "code,exc,text",
    [(3, SkeinJobFailedError, "job failed"), (4, SkeinTimeoutError, "timed out"), (2, SkeinUsageError, "usage")],
)
def test_exit_codes_raise_their_exception_with_stderr(standin, monkeypatch, code, exc, text):
    monkeypatch.setenv("STANDIN_EXIT", str(code))
    monkeypatch.setenv("STANDIN_STDERR", TRACEBACK)
    op = ops.SkeinMapOperator(task_id="t", map_function=my_functions.boom, map_iterdata=[1])
    with pytest.raises(exc) as ei:
        run(op)
    assert text in str(ei.value) and "ValueError: boom: cannot handle 1" in str(ei.value)
    assert ei.value.exit_code == code


def test_stdout_must_be_json(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_STDOUT", "not json")
    with pytest.raises(AirflowException, match="not JSON"):
        run(ops.SkeinCallAsyncOperator(task_id="t", func="add", data={"x": 1, "y": 1}))


# -- XCom: upstream values per run, no piling up ------------------------------------------


def test_data_from_task_does_not_change_the_operator(standin):
    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={"x": 4}, data_from_task={"y": "up"})
    run(op, {"up": 4})
    run(op, {"up": 7})
    assert [r["stdin"] for r in standin.records()] == [{"x": 4, "y": 4}, {"x": 4, "y": 7}]
    assert op.data == {"x": 4}
    lst = ops.SkeinCallAsyncOperator(task_id="l", func="add", data=[1], data_from_task={"y": "up"})
    run(lst, {"up": 2})
    run(lst, {"up": 3})
    assert [r["stdin"] for r in standin.records()[2:]] == [[1, 2], [1, 3]]
    assert lst.data == [1]


def test_iterdata_from_task_forms(standin):
    run(ops.SkeinMapOperator(task_id="a", map_function="add", iterdata_from_task="up", extra_params={"y": 1}), {"up": [1, 2]})
    run(ops.SkeinMapOperator(task_id="b", map_function="add", iterdata_from_task={"x": "up"}), {"up": [1, 2]})
    run(ops.SkeinMapOperator(task_id="c", map_function="add", map_iterdata=[], iterdata_form_task="up"), {"up": "[5, 6]"})
    assert [r["stdin"] for r in standin.records()] == [[1, 2], [{"x": 1}, {"x": 2}], [5, 6]]
    with pytest.raises(AirflowException, match="pushed no XCom"):
        run(ops.SkeinMapOperator(task_id="d", map_function="add", iterdata_from_task="up"), {})


def test_dag_test_pulls_upstream_values_each_run(standin, airflow_db):
    """In real Airflow (dag.test), two runs of one DAG object: each run sends the
    upstream value of that run only, and the operator's data stays as written."""
    dag = dag_file("unit_dags.py", "unit_xcom_runs")
    for _ in range(2):
        dr = dag.test()
        assert ti_states(dr) == {"up": "success", "call": "success"}
        assert xcom(dr, "call")["stdin"] == {"x": 1, "y": 10}
    assert [r["stdin"] for r in standin.records()] == [{"x": 1, "y": 10}, {"x": 1, "y": 10}]
    assert dag.task_dict["call"].data == {"x": 1}


def test_templated_iterdata_is_rendered(standin, airflow_db):
    dr = dag_file("unit_dags.py", "unit_templated").test()
    got = xcom(dr, "m")
    assert got["stdin"] == [0, 1, 2]
    assert got["argv"][got["argv"].index("--extra-params") + 1] == '{"y": "3"}'


# -- deferral with the stand-in -------------------------------------------------------------


def test_deferrable_submits_no_wait_defers_and_fetches_on_resume(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_RESULT", "[2, 3, 4]")
    op = ops.SkeinMapOperator(task_id="t", map_function=my_functions.add, map_iterdata=[1, 2, 3],
                              extra_params={"y": 1}, deferrable=True, min_deferral=0.5)
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as ei:
        op.execute({"ti": ti})
    trig = ei.value.trigger
    assert isinstance(trig, SkeinJobTrigger) and trig.job_id == "job-123"
    assert ti.pushed["skein_job_id"] == "job-123"
    assert "--no-wait" in standin.records()[0]["argv"]
    classpath, kwargs = trig.serialize()
    assert classpath == "skein_provider.triggers.skein.SkeinJobTrigger"
    assert kwargs["min_deferral"] == 0.5

    async def first_event():
        async for ev in SkeinJobTrigger(**kwargs).run():
            return ev

    # The job ends at once (the stand-in's wait returns); the event still
    # comes no sooner than min_deferral after the wait began.
    started = time.monotonic()
    ev = asyncio.run(first_event())
    assert time.monotonic() - started >= 0.5
    assert ev.payload == {"status": "success", "job_id": "job-123", "exit_code": 0, "message": ""}
    assert standin.records()[1]["argv"] == ["wait", "job-123"]
    assert op.execute_complete({"ti": ti}, ev.payload) == [2, 3, 4]
    assert standin.records()[2]["argv"] == ["result", "job-123"]


def test_trigger_reports_a_failed_job(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_EXIT", "3")
    monkeypatch.setenv("STANDIN_STDERR", TRACEBACK)

    async def first_event():
        async for ev in SkeinJobTrigger(job_id="j", min_deferral=0).run():
            return ev

    ev = asyncio.run(first_event())
    assert ev.payload["status"] == "error" and ev.payload["exit_code"] == 3
    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={}, deferrable=True)
    with pytest.raises(SkeinJobFailedError, match="ValueError: boom"):
        op.execute_complete({}, ev.payload)


def test_min_deferral_defaults_and_bounds():
    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={}, deferrable=True)
    assert op.min_deferral is None and SkeinJobTrigger(job_id="j").serialize()[1]["min_deferral"] == 5.0
    for bad in (-1, "5", True, 3601):
        with pytest.raises(AirflowException, match="SkeinCallAsyncOperator: min_deferral must be a number of seconds from 0 to 3600"):
            ops.SkeinCallAsyncOperator(task_id="t", func="add", data={}, deferrable=True, min_deferral=bad)
        with pytest.raises(AirflowException, match="SkeinJobSensor: min_deferral must be a number of seconds from 0 to 3600"):
            SkeinJobSensor(task_id="s", job_id="j", deferrable=True, min_deferral=bad)
    sensor = SkeinJobSensor(task_id="s", job_id="j", deferrable=True, min_deferral=7)
    with pytest.raises(TaskDeferred) as ei:
        sensor.execute({})
    assert ei.value.trigger.serialize()[1]["min_deferral"] == 7.0
    # The floor never outlasts half of the wait's timeout: a job that ended
    # at once must not time the task out.
    sensor = SkeinJobSensor(task_id="s", job_id="j", deferrable=True, timeout=4)
    with pytest.raises(TaskDeferred) as ei:
        sensor.execute({})
    assert ei.value.trigger.serialize()[1]["min_deferral"] == 2.0


def test_min_deferral_within_the_execution_timeout(standin):
    import datetime

    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={}, deferrable=True, min_deferral=30,
                                    execution_timeout=datetime.timedelta(seconds=20))
    with pytest.raises(TaskDeferred) as ei:
        op.execute({"ti": FakeTI()})
    assert ei.value.trigger.serialize()[1]["min_deferral"] == 10.0


# -- aliases of the old plugins --------------------------------------------------------------


def test_old_names_and_classes():
    assert ops.LithopsMapOperator is ops.SkeinMapOperator
    assert ops.CloudbuttonAsyncOperator is ops.SkeinCallAsyncOperator
    assert ops.IbmCloudFunctionsMapReduceOperator is ops.SkeinMapReduceOperator
    op = ops.CloudbuttonMapReduceOperator(
        task_id="t", map_function=my_functions.add, reduce_funtion=my_functions.mult, map_iterdata=[],
        iterdata_form_task={"x": "up"}, extra_args={"y": 1}, cloudbutton_engine_config="/c.yaml",
        async_invoke=False, get_result=False, remote_invoker=True, runtime="img:1", workers=10,
    )
    assert op.iterdata_from_task == {"x": "up"} and op.extra_params == {"y": 1}
    assert op.reduce_function is my_functions.mult and op.config == "/c.yaml"
    assert op.wait_for_result is True and op.fetch_result is False and op.remote_invocation is True
    p = ops.IbmPyWrenMapOperator(task_id="p", map_function="add", map_iterdata=[1], pywren_executor_config={"pool": "p1"},
                                 async_invoke=True)
    assert p.config == {"pool": "p1"} and p.wait_for_result is False


# -- bad arguments fail at construction -----------------------------------------------------


def nested_holder():
    def inner(x):
        return x
    return inner


@pytest.mark.parametrize(
    "cls,kwargs,message",
    [
        (ops.SkeinMapOperator, {"map_function": "add"}, "set map_iterdata or iterdata_from_task"),
        (ops.SkeinMapOperator, {"map_function": "add", "map_iterdata": [1], "chunk_size": 10, "chunk_n": 2},
         "chunk_size and chunk_n are exclusive"),
        (ops.SkeinMapOperator, {"map_function": my_functions.Unpicklable(), "map_iterdata": [1]},
         "cannot be pickled to ship it to the runtimes"),
        (ops.SkeinMapOperator, {"map_iterdata": [1]}, "map_function is required"),
        (ops.SkeinMapOperator, {"map_function": "add", "map_iterdata": 5}, "map_iterdata must be a list"),
        (ops.SkeinMapOperator, {"map_function": "add", "map_iterdata": [1], "chunk_n": 0}, "chunk_n must be a positive integer"),
        (ops.SkeinMapOperator, {"map_function": "add", "iterdata_from_task": {"a": "x", "b": "y"}}, "one-entry dict"),
        (ops.SkeinMapReduceOperator, {"map_function": "add", "map_iterdata": [1]}, "reduce_function is required"),
        (ops.SkeinMapReduceOperator, {"map_function": "add", "reduce_function": "sum", "map_iterdata": [1],
                                      "reduce_mode": "eager"}, "reduce_mode must be"),
        (ops.SkeinCallAsyncOperator, {"data": {}}, "func is required"),
        (ops.SkeinCallAsyncOperator, {"func": "py:bad ref"}, "not a valid Python reference"),
        (ops.SkeinCallAsyncOperator, {"func": 42}, "must be a callable"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "data_from_task": ["x"]}, "data_from_task must be a dict"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "timeout": -1}, "timeout must be a positive number"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "task_timeout": 0}, "task_timeout must be a positive number"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "timeout": 10, "task_timeout": 60}, "longer than the job's timeout"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "deferrable": True, "config": {"a": 1}}, "config as a file path"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "deferrable": True, "wait_for_result": False}, "makes no sense"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "config": "/a", "lithops_config": "/b"}, "old name of config"),
        (ops.SkeinCallAsyncOperator, {"func": "add", "wait_for_result": True, "async_invoke": True}, "contradicts"),
    ],
)
def test_bad_arguments(cls, kwargs, message):
    with pytest.raises(AirflowException, match=message):
        cls(task_id="bad", **kwargs)


def test_unknown_argument_is_refused_by_airflow():
    with pytest.raises(TypeError, match="Invalid arguments"):
        ops.SkeinMapOperator(task_id="bad", map_function="add", map_iterdata=[1], no_such_param=1)


def test_functions_of_the_dag_file_lambdas_and_closures_travel_by_value(standin, tmp_path, airflow_db):
    """What the old plugin took and the runtimes cannot import by name is pickled
    with cloudpickle: the DAG parses (in a DagBag too), the operator hands submit
    py:@<its pickle>, ships the modules the function uses by name, and removes the
    pickle afterwards."""
    import cloudpickle

    dag_path = tmp_path / "dag_with_local_function.py"
    dag_path.write_text(
        "from airflow.sdk import DAG\n"
        "from my_functions import add\n"
        "from skein_provider.operators import SkeinMapOperator\n"
        "OFFSET = 100\n"
        "def helper(x):\n    return add(x, OFFSET)\n"
        "def double(x):\n    return 2 * helper(x)\n"
        "with DAG(dag_id='local_fn', schedule=None) as dag:\n"
        "    SkeinMapOperator(task_id='m', map_function=double, map_iterdata=[1])\n"
        "    SkeinMapOperator(task_id='l', map_function=lambda x: -x, map_iterdata=[1])\n"
    )
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_path))
    assert bag.import_errors == {} and "local_fn" in bag.dags
    dag = load_dag(str(dag_path), "local_fn")
    op = dag.task_dict["m"]
    ref = op._resolve(op.map_function, "map_function")
    assert ref.ref.startswith("py:@skein_fn_") and ref.ref.endswith(".pkl")
    # my_functions is used by name (add): shipped beside the pickle.
    assert ref.ship == (MYF,)
    head, _, body = ref.pickled.partition(b"\n")
    header = json.loads(head[len(b"#skein-pickle "):])
    assert header["python"] == "%d.%d.%d" % sys.version_info[:3] and header["name"].endswith("double")
    f = cloudpickle.loads(body)
    assert f(1) == 202

    run(op)
    argv = standin.records()[0]["argv"]
    fn_arg = argv[argv.index("--function") + 1]
    assert fn_arg.startswith("py:@/") and os.path.basename(fn_arg) == ref.file
    assert not os.path.exists(fn_arg[len("py:@"):]), "the pickle outlived the submit"
    assert argv[argv.index("--include-modules") + 1] == MYF

    lam = dag.task_dict["l"]._resolve(dag.task_dict["l"].map_function, "map_function")
    assert lam.ref.startswith("py:@skein_fn_") and cloudpickle.loads(lam.pickled.partition(b"\n")[2])(3) == -3


def test_nested_functions_and_partials_travel_by_value():
    import functools

    import cloudpickle

    for fn, arg, want in ((nested_holder(), 5, 5), (functools.partial(my_functions.add, y=10), 1, 11)):
        ref = resolve(fn, "f")
        assert ref.ref.startswith("py:@skein_fn_")
        assert cloudpickle.loads(ref.pickled.partition(b"\n")[2])(arg) == want
    assert resolve(functools.partial(my_functions.add, y=10), "f").ship == (MYF,)


def test_resolve_references():
    assert resolve("add", "f").ref == "add"
    assert resolve("my_functions:add", "f").ref == "py:my_functions:add"
    assert resolve("py:pkg.mod:fn", "f").ref == "py:pkg.mod:fn"
    assert resolve(my_functions.add, "f").ship == (MYF,)
    # The standard library is not shipped.
    import json as j

    r = resolve(j.dumps, "f")
    assert r.ref == "py:json:dumps" and r.ship == ()


def test_example_dags_parse_in_a_dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=EXAMPLES)
    assert bag.import_errors == {}
    assert {"example_skein_call_async", "example_skein_map", "example_skein_mapreduce",
            "example_skein_wordcount", "example_skein_deferrable"} <= set(bag.dag_ids)


def test_provider_is_discovered():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-skein" in pm.providers
    info = pm.providers["airflow-provider-skein"].data
    (conn,) = info["connection-types"]
    assert conn["hook-class-name"] == "skein_provider.hooks.skein.SkeinHook" and conn["connection-type"] == "skein"
    assert pm.hooks["skein"].hook_class_name == "skein_provider.hooks.skein.SkeinHook"


# -- include_modules: the DAG file's folder, then the Python path --------------------------------


def test_include_modules_resolve_against_the_dag_folder_then_the_python_path(standin, tmp_path, monkeypatch):
    dags = tmp_path / "dags"
    (dags / "lib").mkdir(parents=True)
    (dags / "pkg_h").mkdir()
    (dags / "my_helpers.py").write_text("def f(x):\n    return x\n")
    (dags / "lib" / "more.py").write_text("")
    (dags / "pkg_h" / "__init__.py").write_text("")
    (dags / "pkg_h" / "sub.py").write_text("")
    (dags / "dag_incl.py").write_text(
        "from airflow.sdk import DAG\n"
        "from skein_provider.operators import SkeinMapOperator\n"
        "with DAG(dag_id='incl', schedule=None) as dag:\n"
        "    SkeinMapOperator(task_id='m', map_function='add', map_iterdata=[1], include_modules=[\n"
        "        'my_helpers', 'my_helpers.py', 'lib/more.py', 'pkg_h.sub', 'standin_submit', 'json'])\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    dag = load_dag(str(dags / "dag_incl.py"), "incl")
    run(dag.task_dict["m"])
    argv = standin.records()[0]["argv"]
    shipped = [argv[i + 1] for i, a in enumerate(argv) if a == "--include-modules"]
    d = os.path.realpath(dags)
    # Names and relative paths from the DAG folder; standin_submit from the Python
    # path (the tests folder); json is the standard library: not shipped; no duplicates.
    assert shipped == [os.path.join(d, "my_helpers.py"), os.path.join(d, "lib", "more.py"),
                       os.path.join(d, "pkg_h"), os.path.realpath(STANDIN)]


@pytest.mark.parametrize("entry,message", [
    ("no_such_helpers", "cannot find the module 'no_such_helpers': looked in the DAG file's folder"),
    ("lib/none.py", "cannot find the path 'lib/none.py'"),
    ("/no/such/file.py", "/no/such/file.py does not exist"),
    ("standin_submit.nope", "standin_submit has no module 'standin_submit.nope'"),
])
def test_include_modules_that_do_not_exist_fail_the_task_naming_where_it_looked(standin, entry, message):
    op = ops.SkeinMapOperator(task_id="t", map_function="add", map_iterdata=[1], include_modules=[entry])
    with pytest.raises(FunctionError, match=message):
        run(op)
    assert standin.records() == []


# -- a Lithops config dict, translated or refused at parse time ------------------------------------

LITHOPS_COS = {
    "lithops": {"backend": "localhost", "storage": "ibm_cos", "storage_bucket": "my-bucket", "monitoring": "rabbitmq",
                "workers": 10, "execution_timeout": 30, "log_level": "INFO"},
    "rabbitmq": {"amqp_url": "amqp://user:rabbit-pw@rabbit.example:5672/vhost"},
    "ibm": {"iam_api_key": "iam-secret-key"},
    "ibm_cos": {"region": "eu-de", "access_key_id": "COS-ID", "secret_access_key": "cos-secret-key"},
}


def spy_config(monkeypatch):
    seen = {}
    real = ops._config_file.__enter__

    def spy(self):
        p = real(self)
        seen["content"] = json.load(open(p))
        seen["mode"] = stat.S_IMODE(os.stat(p).st_mode)
        return p

    monkeypatch.setattr(ops._config_file, "__enter__", spy)
    return seen


def test_a_lithops_config_is_translated_and_no_secret_is_logged(standin, monkeypatch, caplog, capfd):
    seen = spy_config(monkeypatch)
    caplog.set_level(logging.DEBUG)
    op = ops.LithopsMapOperator(task_id="t", map_function="add", map_iterdata=[1, 2], extra_params={"y": 1},
                                lithops_config=LITHOPS_COS)
    run(op)
    assert seen["mode"] == 0o600
    assert seen["content"] == {
        "bus": "amqp://user:rabbit-pw@rabbit.example:5672/vhost",
        "storage": {"endpoint": "https://s3.eu-de.cloud-object-storage.appdomain.cloud", "region": "eu-de",
                    "artifacts": "cos://my-bucket/skein/", "access_key": "COS-ID", "secret_key": "cos-secret-key",
                    "api_key": "iam-secret-key"},
    }
    argv = standin.records()[0]["argv"]
    assert argv[argv.index("--task-timeout") + 1] == "30.0"
    assert argv[argv.index("--workers") + 1] == "10"
    assert argv[argv.index("--log-level") + 1] == "info"
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "bus <- rabbitmq.amqp_url (amqp://***@rabbit.example:5672/vhost)" in logged
    assert "storage from ibm_cos" in logged
    for secret in ("rabbit-pw", "cos-secret-key", "iam-secret-key"):
        assert secret not in logged and not any(secret in a for a in argv)


def test_aws_s3_minio_and_the_old_pywren_section_translate():
    from skein_provider.config import translate

    aws = translate({"lithops": {"storage": "aws_s3"}, "aws": {"access_key_id": "A", "secret_access_key": "S",
                                                               "region": "us-east-1"},
                     "aws_s3": {"storage_bucket": "b"}}).config
    assert aws == {"storage": {"endpoint": "https://s3.us-east-1.amazonaws.com", "region": "us-east-1",
                               "artifacts": "s3://b/skein/", "access_key": "A", "secret_key": "S"}}
    minio = translate({"minio": {"endpoint": "http://127.0.0.1:9000", "storage_bucket": "b", "access_key_id": "A",
                                 "secret_access_key": "S"}, "localhost": {"worker_processes": 4}})
    assert minio.config["storage"]["path_style"] == "true" and minio.workers == 4
    old = translate({"pywren": {"storage_bucket": "b", "rabbitmq_monitor": True},
                     "rabbitmq": {"amqp_url": "amqp://h:5672"}, "ibm_cos": {"endpoint": "https://cos.example"}})
    assert old.config == {"bus": "amqp://h:5672",
                          "storage": {"endpoint": "https://cos.example", "artifacts": "cos://b/skein/"}}
    skein = translate({"bus": "nats://h:4222", "storage": {"endpoint": "http://s", "path_style": True}})
    assert skein.config == {"bus": "nats://h:4222", "storage": {"endpoint": "http://s", "path_style": "true"}}


@pytest.mark.parametrize("cfg,message", [
    ({"lithops": {"backend": "ibm_cf"}, "ibm_cf": {"endpoint": "x"}},
     r"lithops_config: 'ibm_cf' \(a Lithops compute backend.*lithops.backend='ibm_cf'"),
    ({"lithops": {"data_limit": 4}}, "lithops_config: lithops.data_limit: no meaning in Skein; remove it"),
    ({"rabbitmq": {"amqp_url": "amqp://h", "queue": "q"}}, "rabbitmq.queue"),
    ({"ibm_cos": {"endpoint": "e", "private_endpoint": "p"}}, "ibm_cos.private_endpoint"),
    ({"aws": {"session_token": "t"}, "aws_s3": {"region": "r"}}, "aws.session_token"),
    ({"ibm_cos": {"endpoint": "e"}, "aws_s3": {"endpoint": "e"}}, "both set; say which with lithops.storage"),
    ({"lithops": {"storage": "redis"}}, "lithops.storage='redis'"),
    ({"lithops": {"workers": 0}}, "workers must be a positive integer"),
    ({"bus": "nats://h", "rabbitmq": {"amqp_url": "amqp://h"}}, "both bus and rabbitmq.amqp_url"),
    ({"storage": {"bucket": "b"}}, "storage: unknown setting"),
    ({"serverless": {}, "whatever": 1}, r"'serverless' \(a Lithops compute backend.*'whatever' \(not a Skein"),
])
def test_a_config_key_with_no_meaning_in_skein_fails_when_the_dag_is_parsed(cfg, message):
    with pytest.raises(AirflowException, match=message):
        ops.LithopsCallAsyncOperator(task_id="bad", func="add", lithops_config=cfg)


def test_a_lithops_config_with_minio_storage_runs_for_real(airflow_db, submit_bin, monkeypatch, tmp_path):
    """Embedded submit with the translated storage (the test S3 server as Lithops'
    minio section): a call that ships a module uploads it to that bucket; the
    same config with a wrong secret fails the task and never shows the secret."""
    endpoint, access, secret = (os.environ.get(k) for k in ("SKEIN_TEST_S3_ENDPOINT", "SKEIN_TEST_S3_ACCESS",
                                                             "SKEIN_TEST_S3_SECRET"))
    if not endpoint:
        from conftest import need

        need("the test S3 server", "source /work/services.env or run scripts/test.sh (SKEIN_TEST_S3_*)")
    monkeypatch.setenv("SKEIN_SUBMIT", submit_bin)
    monkeypatch.delenv("SKEIN_BUS", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SKEIN_DEFAULT", raising=False)
    bucket = "airflow-lithops-" + os.urandom(4).hex()

    def cfg(sec):
        return {"lithops": {"storage": "minio", "storage_bucket": bucket, "workers": 2},
                "minio": {"endpoint": endpoint, "access_key_id": access, "secret_access_key": sec}}

    op = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={"x": 1, "y": 3}, lithops_config=cfg(secret),
                                    include_modules=[MYF])
    assert run(op)[0] == 4
    bad = ops.SkeinCallAsyncOperator(task_id="t", func="add", data={"x": 1, "y": 3},
                                     lithops_config=cfg("wrong-secret-value"), include_modules=[MYF])
    with pytest.raises(AirflowException) as ei:
        run(bad)
    assert "access denied" in str(ei.value) and "wrong-secret-value" not in str(ei.value)
