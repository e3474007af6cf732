"""The example DAGs and the error cases in real Airflow (dag.test()) against the
real submit binary: embedded mode for the seeds' examples, and a real bus
(nats-server + coordinator + runtime processes) for deferrable mode and the
sensor. Each task's XCom value is asserted."""

import os
import subprocess
import threading
import time

import pytest

from conftest import EXAMPLES, dag_file, example_dag, ti_states, xcom


def task_log(dr, task_id):
    """The task's log file (Airflow writes one per try under AIRFLOW_HOME/logs)."""
    base = os.path.join(os.environ["AIRFLOW_HOME"], "logs", f"dag_id={dr.dag_id}", f"run_id={dr.run_id}", f"task_id={task_id}")
    text = ""
    for root, _dirs, files in os.walk(base):
        for f in sorted(files):
            with open(os.path.join(root, f), errors="replace") as fh:
                text += fh.read()
    return text


@pytest.fixture(autouse=True)
def _embedded(monkeypatch, submit_bin):
    """Unless a test asks for the bus, submit runs embedded (no connection, no SKEIN_BUS)."""
    monkeypatch.delenv("AIRFLOW_CONN_SKEIN_DEFAULT", raising=False)
    monkeypatch.delenv("SKEIN_BUS", raising=False)
    monkeypatch.setenv("SKEIN_SUBMIT", submit_bin)


def test_call_async_example_returns_4_then_8(airflow_db, python_functions):
    dr = example_dag("example_skein_call_async").test()
    assert ti_states(dr) == {"add_task_1": "success", "add_task_2": "success"}
    assert xcom(dr, "add_task_1") == 4
    assert xcom(dr, "add_task_2") == 8


def test_map_example_returns_2_3_4_and_maps_an_upstream_list(airflow_db, python_functions):
    dr = example_dag("example_skein_map").test()
    assert ti_states(dr) == {"map_task": "success", "gen_list": "success", "map_from_task": "success"}
    assert xcom(dr, "map_task") == [2, 3, 4]
    assert xcom(dr, "map_from_task") == [11, 21, 31]


def test_mapreduce_example_returns_24(airflow_db, python_functions):
    dr = example_dag("example_skein_mapreduce").test()
    assert xcom(dr, "mapreduce_task") == 24
    assert xcom(dr, "mapreduce_builtins") == 24


def test_wordcount_over_objects(airflow_db, wordcount_builtin):
    books = os.path.join(EXAMPLES, "data", "books")
    want = 0
    for f in os.listdir(books):
        with open(os.path.join(books, f)) as fh:
            want += len(fh.read().split())
    dr = example_dag("example_skein_wordcount").test()
    assert ti_states(dr) == {"wordcount": "success"}
    assert xcom(dr, "wordcount") == want == 1500


def test_a_raising_function_fails_the_task_with_the_remote_traceback(airflow_db, python_functions, capfd):
    dr = dag_file("acceptance_dags.py", "acceptance_remote_error").test()
    assert ti_states(dr) == {"boom_map": "failed"}
    out, err = capfd.readouterr()
    log = task_log(dr, "boom_map") + out + err
    assert "the Skein job failed (exit 3)" in log
    assert "Traceback" in log and "ValueError: boom: cannot handle" in log


def test_a_timeout_fails_the_task_with_a_timeout_message(airflow_db, python_functions, capfd):
    start = time.monotonic()
    dr = dag_file("acceptance_dags.py", "acceptance_timeout").test()
    took = time.monotonic() - start
    assert ti_states(dr) == {"too_slow": "failed"}
    out, err = capfd.readouterr()
    assert "the Skein job timed out (exit 4)" in task_log(dr, "too_slow") + out + err
    assert took < 25, f"the 2 s timeout took {took:.0f} s to fail the task"


def run_deferrable(dag, monkeypatch, bus, submit_bin):
    """dag.test() runs the trigger in line: record the task runner's states and,
    while the trigger waits, ask the bus for the job's status."""
    import airflow.sdk.definitions.dag as dagmod
    import airflow.sdk.execution_time.supervisor as sup

    states, during = [], []
    real_run = sup.run_task_in_process
    real_trigger = dagmod._run_inline_trigger

    def spy_run(ti, task):
        res = real_run(ti=ti, task=task)
        states.append((ti.task_id, str(getattr(res.ti.state, "value", res.ti.state))))
        return res

    def spy_trigger(trigger, task_sdk_ti):
        status = subprocess.run([submit_bin, "status", trigger.job_id], capture_output=True, text=True,
                                env={**os.environ, "SKEIN_BUS": bus})
        t0 = time.monotonic()
        event = real_trigger(trigger, task_sdk_ti)
        during.append((task_sdk_ti.task_id, trigger.job_id, status.returncode, status.stdout.strip(),
                       time.monotonic() - t0))
        return event

    monkeypatch.setattr(sup, "run_task_in_process", spy_run)
    monkeypatch.setattr(dagmod, "_run_inline_trigger", spy_trigger)
    dr = dag.test()
    assert ti_states(dr) == {"slow_add_deferred": "success", "submit_no_wait": "success", "wait_for_job": "success"}
    assert xcom(dr, "slow_add_deferred") == 5
    job_id = xcom(dr, "submit_no_wait")
    assert isinstance(job_id, str) and job_id
    assert xcom(dr, "wait_for_job") == [2, 3, 4]
    # The deferrable task went through the deferred state, then succeeded.
    slow = [s for t, s in states if t == "slow_add_deferred"]
    assert slow == ["deferred", "success"], states
    # While deferred, its job was running: status answered with a running job, and
    # the trigger waited for the 3 s function rather than returning at once.
    (rec,) = [d for d in during if d[0] == "slow_add_deferred"]
    assert rec[2] == 0, rec
    assert "running" in rec[3].lower() or "pending" in rec[3].lower() or "queued" in rec[3].lower(), rec
    assert rec[4] > 1.0, rec
    assert xcom(dr, "slow_add_deferred", key="skein_job_id") == rec[1]


def test_deferrable_example(airflow_db, python_functions, bus_connection, monkeypatch, submit_bin):
    run_deferrable(example_dag("example_skein_deferrable"), monkeypatch, bus_connection, submit_bin)


def test_deferrable_builtins(airflow_db, bus_connection, monkeypatch, submit_bin):
    run_deferrable(dag_file("acceptance_dags.py", "acceptance_builtin_deferrable"), monkeypatch, bus_connection,
                   submit_bin)


def test_builtins_give_the_examples_results(airflow_db):
    dr = dag_file("acceptance_dags.py", "acceptance_builtins").test()
    assert set(ti_states(dr).values()) == {"success"}, ti_states(dr)
    assert xcom(dr, "add_task_1") == 4
    assert xcom(dr, "add_task_2") == 8
    assert xcom(dr, "map_task") == [2, 3, 4]
    assert xcom(dr, "map_from_task") == [11, 21, 31]
    assert xcom(dr, "mapreduce_task") == 24


def test_a_failing_builtin_fails_the_task_with_the_remote_error(airflow_db, capfd):
    dr = dag_file("acceptance_dags.py", "acceptance_builtin_fail").test()
    assert ti_states(dr) == {"fail_map": "failed"}
    out, err = capfd.readouterr()
    log = task_log(dr, "fail_map") + out + err
    assert "the Skein job failed (exit 3)" in log and "no luck" in log


def test_a_builtin_timeout_fails_the_task_with_a_timeout_message(airflow_db, capfd):
    start = time.monotonic()
    dr = dag_file("acceptance_dags.py", "acceptance_builtin_timeout").test()
    took = time.monotonic() - start
    assert ti_states(dr) == {"too_slow": "failed"}
    out, err = capfd.readouterr()
    assert "the Skein job timed out (exit 4)" in task_log(dr, "too_slow") + out + err
    assert took < 25, f"the 2 s timeout took {took:.0f} s to fail the task"


def test_task_timeout_limits_one_call_within_a_longer_job_timeout(airflow_db, capfd):
    start = time.monotonic()
    dr = dag_file("acceptance_dags.py", "acceptance_builtin_task_timeout").test()
    took = time.monotonic() - start
    assert ti_states(dr) == {"too_slow_call": "failed"}
    out, err = capfd.readouterr()
    log = task_log(dr, "too_slow_call") + out + err
    assert "the Skein job failed (exit 3)" in log and "function ran past its deadline" in log
    assert took < 25, f"the 2 s task_timeout took {took:.0f} s to fail the task (the job's timeout is 120 s)"


def test_include_modules_are_found_next_to_the_dag_file(airflow_db, python_functions, tmp_path, monkeypatch):
    """Names and relative paths resolve against the DAG file's folder (not on the
    Python path, not the current directory), then the Python path."""
    monkeypatch.chdir(tmp_path)
    dr = dag_file(os.path.join("incl", "dag_include.py"), "acceptance_include_modules").test()
    assert set(ti_states(dr).values()) == {"success"}, ti_states(dr)
    assert xcom(dr, "by_name") == [3, 6, 9]
    assert xcom(dr, "by_file_name") == [15]
    assert xcom(dr, "by_relative_path") == [-1, -2]
    assert xcom(dr, "by_dotted_name") == 16


SEEDS = {"add_task_1": 4, "add_task_2": 8, "map_task": [2, 3, 4], "map_from_task": [12, 13, 14],
         "mapreduce_task": 8, "wordcount_per_book": [300, 500, 700], "square_map": [1, 4, 9]}


def test_the_seeds_dag_runs_unchanged_embedded(airflow_db, python_functions):
    dr = dag_file("seeds_lithops_dag.py", "seeds_lithops").test()
    assert ti_states(dr) == {t: "success" for t in SEEDS}, ti_states(dr)
    assert {t: xcom(dr, t) for t in SEEDS} == SEEDS


def test_the_seeds_dag_runs_unchanged_on_nats(airflow_db, python_functions, bus_connection):
    dr = dag_file("seeds_lithops_dag.py", "seeds_lithops").test()
    assert ti_states(dr) == {t: "success" for t in SEEDS}, ti_states(dr)
    assert {t: xcom(dr, t) for t in SEEDS} == SEEDS
