"""Test setup: a private AIRFLOW_HOME with a sqlite metadata DB, the example DAGs
importable, and fixtures for the real submit binary and a real Skein bus
(nats-server + coordinator + runtime processes on loopback).

Under CI (CI=true) a missing submit binary or nats-server is a failure, never a skip.
"""

import os
import sys
import tempfile

_HOME = tempfile.mkdtemp(prefix="skein-airflow-home-")
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "example_dags")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
TEST_DAGS = os.path.join(HERE, "dags")
# dag.test() serializes DAGs from the dags folder: link the example DAGs and the
# tests' own DAG files into one private folder.
DAGS_FOLDER = os.path.join(_HOME, "dags")
os.makedirs(DAGS_FOLDER)
for _d in (EXAMPLES, TEST_DAGS):
    for _f in sorted(os.listdir(_d)):
        if _f.endswith(".py") or (_d == TEST_DAGS and os.path.isdir(os.path.join(_d, _f)) and _f != "__pycache__"):
            os.symlink(os.path.join(_d, _f), os.path.join(DAGS_FOLDER, _f))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = DAGS_FOLDER
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# One Fernet key for this process and the airflow commands it runs, so that a
# password one of them encrypts the others can read.
from cryptography.fernet import Fernet  # noqa: E402

os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
os.environ.pop("AIRFLOW_CONN_SKEIN_DEFAULT", None)
os.environ.pop("SKEIN_BUS", None)
# The functions' Python (embedded submit and the runtimes): this venv's, which has
# the cloudpickle that functions shipped by value were pickled with.
os.environ.setdefault("SKEIN_PYTHON", sys.executable)
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import importlib.util  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

CI = os.environ.get("CI") in ("true", "1")


def need(what: str, how: str):
    """Fail under CI, skip elsewhere: a missing outside part."""
    msg = f"{what} is not available: {how}"
    if CI:
        pytest.fail(msg + " (under CI nothing may be skipped)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated sqlite metadata DB in the private AIRFLOW_HOME."""
    r = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{r.stdout}\n{r.stderr}")
    from airflow import settings

    settings.configure_orm()
    return _HOME


def load_dag(path: str, dag_id: str):
    """Import a DAG file as a regular module and return its DAG."""
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    for v in vars(mod).values():
        if getattr(v, "dag_id", None) == dag_id and hasattr(v, "test"):
            return v
    raise LookupError(f"{path} defines no DAG {dag_id}")


def example_dag(dag_id: str):
    return load_dag(os.path.join(EXAMPLES, dag_id + ".py"), dag_id)


def dag_file(file: str, dag_id: str):
    return load_dag(os.path.join(TEST_DAGS, file), dag_id)


def xcom(dr, task_id: str, key: str = "return_value"):
    """The XCom value task_id pushed in the dag run dr."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=dr.run_id, dag_ids=dr.dag_id, task_ids=task_id, key=key)
        ).first()
        if row is None:
            raise LookupError(f"no XCom {key} for {dr.dag_id}.{task_id} in run {dr.run_id}")
        return XComModel.deserialize_value(row)


def ti_states(dr) -> dict:
    from airflow.utils.session import create_session

    with create_session() as session:
        return {ti.task_id: str(ti.state) for ti in dr.get_task_instances(session=session)}


@pytest.fixture(scope="session")
def submit_bin():
    """The real submit binary (scripts/tests/airflow.sh builds it and puts it on PATH)."""
    path = os.environ.get("SKEIN_SUBMIT") or shutil.which("submit")
    if not path:
        need("the submit binary", "run scripts/tests/airflow.sh, which builds it with go build and puts it on PATH")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def skein_bus(submit_bin, tmp_path_factory):
    """nats-server with JetStream, a coordinator and a runtime, all real processes
    on loopback. Yields the bus URL."""
    nats = shutil.which("nats-server")
    if not nats:
        need("nats-server", "apt-get install -y nats-server (scripts/tests/airflow.sh does)")
    bindir = os.path.dirname(submit_bin)
    coord, runtime = os.path.join(bindir, "coordinator"), os.path.join(bindir, "runtime")
    for b in (coord, runtime):
        if not os.access(b, os.X_OK):
            need(os.path.basename(b), f"build it next to submit ({bindir}) with go build ./cmd/...")
    d = tmp_path_factory.mktemp("bus")
    port = _free_port()
    url = f"nats://127.0.0.1:{port}"
    procs = []
    logs = []

    def start(argv, name):
        log = open(d / f"{name}.log", "wb")
        logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    try:
        p = start([nats, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(d / "js")], "nats")
        _wait_port(port, p, "nats-server")
        start([coord, "--bus", url], "coordinator")
        # As this user, not nobody: the functions' Python (SKEIN_PYTHON, this venv)
        # lives under this user's home.
        start([runtime, "--bus", url, "--run-as", str(os.getuid())], "runtime")
        time.sleep(1.0)
        for p, name in zip(procs, ("nats-server", "coordinator", "runtime")):
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode}; see {d}/{name.split('-')[0]}.log")
        yield url
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


@pytest.fixture
def bus_connection(skein_bus, monkeypatch):
    """The skein_default connection pointing at the test bus."""
    import json

    monkeypatch.setenv("AIRFLOW_CONN_SKEIN_DEFAULT", json.dumps({"conn_type": "skein", "host": skein_bus}))
    return skein_bus


_CAPS = {}


def _probe(submit: str, name: str) -> tuple[bool, str]:
    """Whether the built submit runs Python functions ("py") or the wordcount built-in ("wordcount")."""
    if name == "py":
        argv = [submit, "call", "--function", "py:my_functions:add", "--data", '{"x": 1, "y": 3}',
                "--include-modules", os.path.join(EXAMPLES, "my_functions.py")]
        want = "4"
    else:
        books = os.path.join(EXAMPLES, "data", "books")
        argv = [submit, "mapreduce", "--function", "wordcount", "--iterdata", f'["local://{books}/"]',
                "--chunk-n", "2", "--reduce-function", "sum"]
        want = "1500"
    env = {k: v for k, v in os.environ.items() if k != "SKEIN_BUS"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    return r.returncode == 0 and r.stdout.strip() == want, (r.stderr.strip() or r.stdout.strip())[-500:]


def require_capability(submit: str, name: str) -> None:
    """Fail (CI) or skip (elsewhere) when the built binaries lack a capability that
    the tests need (the Python host; the wordcount built-in and local:/// storage)."""
    if name not in _CAPS:
        _CAPS[name] = _probe(submit, name)
    ok, why = _CAPS[name]
    if ok:
        return
    msg = f"the built submit cannot run the {name!r} capability yet: {why}"
    if CI:
        pytest.fail(msg + " (under CI nothing may be skipped)")
    pytest.skip(msg)


@pytest.fixture
def python_functions(submit_bin):
    require_capability(submit_bin, "py")


@pytest.fixture
def wordcount_builtin(submit_bin):
    require_capability(submit_bin, "wordcount")
