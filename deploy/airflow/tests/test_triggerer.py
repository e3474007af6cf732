"""deferrable=True with a real triggerer: the seeds-style DAG with deferrable
operators runs through dag.test(use_executor=True), so that its tasks run in
LocalExecutor worker processes talking to a real `airflow api-server`, and
defer to a real `airflow triggerer` process (never to dag.test()'s inline
trigger), against a real bus (nats-server, coordinator, runtime)."""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import _free_port, _wait_port, dag_file, ti_states, xcom

SEEDS_DEFERRABLE = {"add_task_1": 4, "add_task_2": 8, "map_task": [2, 3, 4], "map_from_task": [12, 13, 14],
                    "mapreduce_task": 8, "square_map": [1, 4, 9]}


@pytest.fixture
def airflow_processes(airflow_db, skein_bus, submit_bin, tmp_path, monkeypatch):
    """An api-server (the execution API the workers and the triggerer use) and a
    triggerer, sharing this test's metadata DB, connection and settings."""
    port = _free_port()
    env = {
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": "skein-test-" + os.urandom(8).hex(),
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_SKEIN_DEFAULT": json.dumps({"conn_type": "skein", "host": skein_bus}),
        "SKEIN_SUBMIT": submit_bin,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    procs, logs = {}, {}
    try:
        for name, argv in (("api-server", ["api-server", "--port", str(port), "--host", "127.0.0.1"]),
                           ("triggerer", ["triggerer"])):
            logs[name] = open(tmp_path / f"{name}.log", "w+")
            procs[name] = subprocess.Popen([sys.executable, "-m", "airflow", *argv], stdout=logs[name],
                                           stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
        _wait_port(port, procs["api-server"], "airflow api-server", timeout=120)
        _wait_triggerer(procs["triggerer"], timeout=120)
        yield {n: tmp_path / f"{n}.log" for n in procs}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()


def _wait_triggerer(proc, timeout):
    """Until the triggerer's job row is alive in the metadata DB."""
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"airflow triggerer exited with {proc.returncode}")
        with create_session() as session:
            job = session.query(Job).filter(Job.job_type == "TriggererJob").order_by(Job.id.desc()).first()
            if job is not None and job.state == "running" and job.is_alive():
                return
        time.sleep(0.5)
    raise RuntimeError(f"airflow triggerer did not start within {timeout}s")


@pytest.mark.timeout(300)  # without a working triggerer the deferred tasks would wait for ever
def test_the_seeds_dag_deferrable_on_nats_with_a_real_triggerer(airflow_processes, python_functions, monkeypatch):
    import airflow.sdk.definitions.dag as dagmod

    def no_inline(*a, **k):
        raise AssertionError("dag.test() ran a trigger inline: the triggerer process must run it")

    monkeypatch.setattr(dagmod, "_run_inline_trigger", no_inline)
    dag = dag_file("seeds_lithops_deferrable_dag.py", "seeds_lithops_deferrable")
    dr = dag.test(use_executor=True)
    states = ti_states(dr)
    logs = {n: p.read_text(errors="replace") for n, p in airflow_processes.items()}
    assert states == {t: "success" for t in SEEDS_DEFERRABLE}, (states, logs["triggerer"][-4000:])
    assert {t: xcom(dr, t) for t in SEEDS_DEFERRABLE} == SEEDS_DEFERRABLE
    # Each task deferred after pushing its job id, and the triggerer process (its
    # log is the task's attempt=1.log.trigger.<triggerer job>.log) waited for
    # that job with SkeinJobTrigger and fired the success event.
    import glob

    base = os.path.join(os.environ["AIRFLOW_HOME"], "logs", f"dag_id={dr.dag_id}", f"run_id={dr.run_id}")
    for t in SEEDS_DEFERRABLE:
        job = xcom(dr, t, key="skein_job_id")
        assert isinstance(job, str) and job
        (trigger_log,) = glob.glob(os.path.join(base, f"task_id={t}", "attempt=1.log.trigger.*.log"))
        text = open(trigger_log, errors="replace").read()
        assert f"waiting for Skein job {job} (submit wait)" in text and "skein_provider.triggers.skein" in text, text
        assert "Trigger fired event" in text and f"'status': 'success', 'job_id': '{job}'" in text, text
