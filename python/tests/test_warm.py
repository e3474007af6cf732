"""The warm installation: one submit serve process per executor with a
coordinator and runtime inside, kept between jobs, whose Python
interpreters stay up (no process or interpreter start per job once warm),
gone with the executor, or with its process when that is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import skeinrun


def pid_of_call(x):
    return os.getpid()


def test_interpreters_stay_up_between_jobs():
    with skeinrun.FunctionExecutor(max_workers=1) as fexec:
        first = fexec.call_async(pid_of_call, 0).result()
        procs = [fexec._session.proc.pid]  # the installation runs inside it
        pids = {fexec.call_async(pid_of_call, i).result() for i in range(5)}
        pids |= set(fexec.map(pid_of_call, range(20)).get_result())
        assert pids == {first}, "a job started another interpreter"
        assert [fexec._session.proc.pid] == procs
    # Closed with the executor.
    for pid in procs + [first]:
        assert not _alive(pid), f"process {pid} outlived the executor"


def sleepy(x):
    time.sleep(x)
    return x


def test_warm_jobs_share_one_submit_process():
    # A warm job is a request to the executor's one submit serve process,
    # not a process of its own; it goes with the executor.
    with skeinrun.FunctionExecutor(max_workers=1) as fexec:
        fexec.call_async(pid_of_call, 0).result()
        serve = fexec._session.proc.pid
        for i in range(5):
            fexec.call_async(pid_of_call, i).result()
        fexec.map(pid_of_call, range(10)).get_result()
        assert fexec._session.proc.pid == serve
    assert _wait_gone([serve]) == [], "submit serve outlived the executor"


def test_crash_of_the_submit_process_is_reported_and_replaced():
    with skeinrun.FunctionExecutor(max_workers=2) as fexec:
        fexec.call_async(pid_of_call, 0).result()
        old = fexec._session.proc.pid
        f = fexec.call_async(sleepy, 20)
        os.kill(old, signal.SIGKILL)
        with pytest.raises(skeinrun.JobError, match="submit serve process exited"):
            f.result()
        # The next job starts another one and runs.
        assert fexec.call_async(sleepy, 0).result() == 0
        assert fexec._session.proc.pid != old


def test_new_functions_share_the_warm_interpreter():
    # Each job ships its own function (a notebook's lambdas): the warm
    # interpreter switches to each job's modules, it is not restarted.
    with skeinrun.FunctionExecutor(max_workers=1) as fexec:
        pids = set()
        for i in range(5):
            f = eval(f"lambda: (__import__('os').getpid(), {i})")
            pid, j = fexec.call_async(f, ()).result()
            assert j == i
            pids.add(pid)
        assert len(pids) == 1, "a job of a new function started another interpreter"


def test_embedded_mode_starts_one_per_job():
    # The contrast: without the warm installation each job is a new submit.
    with skeinrun.FunctionExecutor(warm=False, max_workers=1) as fexec:
        a = fexec.call_async(pid_of_call, 0).result()
        b = fexec.call_async(pid_of_call, 0).result()
        assert a != b and fexec.warm_bus is None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _wait_gone(pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def test_survives_its_starting_thread_and_dies_with_a_killed_process(tmp_path):
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent("""
        import os, threading, skeinrun
        fexec = skeinrun.FunctionExecutor()
        out = []
        t = threading.Thread(target=lambda: out.append(fexec.map(lambda v: v * 2, [1, 2]).get_result()))
        t.start(); t.join()
        # The thread that started the installation has ended: it is still up.
        print(out[0], fexec.map(lambda v: v * 3, [1, 2]).get_result(), fexec._session.alive())
        interpreter = fexec.call_async(os.getpid, ()).result()
        print(fexec._session.proc.pid, interpreter, flush=True)
        os.kill(os.getpid(), 9)
    """))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[2, 4] [3, 6] True"
    pids = [int(p) for p in lines[1].split()]
    assert len(pids) == 2
    assert _wait_gone(pids) == [], "the warm installation (submit serve) or its interpreter outlived its killed process"
