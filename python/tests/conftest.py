"""Fixtures of the skeinrun tests: executors in each mode (a warm private
installation, the per-job embedded submit, and a coordinator and runtime on
the test NATS broker, SKEIN_TEST_NATS_URL), real processes throughout.

Under CI (CI=true) a missing broker is a failure, never a skip."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import skeinrun


def need(what: str, why: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing under CI: {why}")
    pytest.skip(f"{what} is missing: {why}")


@pytest.fixture(scope="session")
def submit_bin() -> str:
    return skeinrun.submit_path()


def _wait_coordinator(binary: str, bus: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run([binary, "status", "skeinrun-probe", "--bus", bus], capture_output=True)
        if r.returncode in (0, 2):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no coordinator on {bus}: {r.stderr.decode()}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def nats_bus(submit_bin, tmp_path_factory):
    """A coordinator and a runtime of their own (the wheel's binary) on the
    shared test nats-server, in a namespace of their own."""
    yield from _install(submit_bin, tmp_path_factory, "SKEIN_TEST_NATS_URL", "NATS")


@pytest.fixture(scope="session")
def amqp_bus(submit_bin, tmp_path_factory):
    """The same on the shared test RabbitMQ."""
    yield from _install(submit_bin, tmp_path_factory, "SKEIN_TEST_AMQP_URL", "RabbitMQ")


def _install(submit_bin, tmp_path_factory, var, name):
    url = os.environ.get(var)
    if not url:
        need(var, f"the {name} tests run against the test broker (source /work/services.env)")
    bus = f"{url}{'&' if '?' in url else '?'}ns=skeinrun{uuid.uuid4().hex[:8]}"
    logdir = tmp_path_factory.mktemp("install")
    env = dict(os.environ, SKEIN_PYTHON=sys.executable)
    env.pop("SKEIN_BUS", None)
    log = open(logdir / "install.log", "ab")
    procs = [subprocess.Popen([submit_bin, "__coordinator", "--bus", bus], stdout=log, stderr=log, env=env)]
    _wait_coordinator(submit_bin, bus)
    rt = [submit_bin, "__runtime", "--bus", bus, "--hosts", "go,py", "--slots", "2"]
    if os.geteuid() == 0:
        rt += ["--run-as", "root"]
    procs.append(subprocess.Popen(rt, stdout=log, stderr=log, env=env))
    yield bus
    for p in reversed(procs):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    log.close()


MODES = ["warm", "embedded", "nats"]


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@pytest.fixture
def fexec(mode, request):
    """A FunctionExecutor in each mode, closed after the test."""
    if mode == "warm":
        ex = skeinrun.FunctionExecutor()
    elif mode == "embedded":
        ex = skeinrun.FunctionExecutor(warm=False)
    else:
        ex = skeinrun.FunctionExecutor(bus=request.getfixturevalue("nats_bus"))
    with ex:
        yield ex
