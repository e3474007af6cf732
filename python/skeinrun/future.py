"""ResponseFuture and FuturesList: one function call's state and result, as
Lithops has them (lithops/future.py), filled in by the executor's job
threads from the output of ``submit``."""

from __future__ import annotations

import base64
import pickle
import threading
import time
from typing import Any

from . import wait as _wait


class RemoteTraceback(Exception):
    """The traceback of a function's exception as the runtime formatted it:
    the cause of the exception the caller gets back."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n\n" + self.tb.rstrip("\n") + "\n\n(raised in a Skein function; the frames above are the runtime's)"


class FunctionError(Exception):
    """A function's exception that could not be sent back as itself (its class
    does not unpickle here): its class name, message and remote traceback."""


class JobError(Exception):
    """A job that ended without a result for this call: a function that could
    not be loaded or whose arguments did not bind, a call killed by its timeout
    or memory limit, a cancelled job, a bus or coordinator that failed.
    ``kind`` is Skein's error kind when known, ``stderr`` what submit said."""

    def __init__(self, message: str, kind: str | None = None, stderr: str = "", exit_code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.stderr = stderr
        self.exit_code = exit_code


class FunctionTimeoutError(JobError, TimeoutError):
    """A call that ran past its timeout."""


def decode(value: Any) -> tuple[bool, Any]:
    """(ok, value) from one result as an envelope returned it: ok False with
    the exception to raise (its remote traceback attached as its cause)."""
    if not isinstance(value, str) or not value or value[0] not in "re":
        return True, value  # a built-in or non-Python function's JSON result
    data = pickle.loads(base64.b64decode(value[1:]))
    if value[0] == "r":
        return True, data
    exc, tb = data
    if exc is None:
        name, message, tb = tb
        exc = FunctionError(f"{name}: {message}")
    exc.__cause__ = RemoteTraceback(tb)
    return False, exc


class ResponseFuture:
    """One call of a job: its state (``done``, ``success``, ``error``,
    ``running``...) and, once the job reports it, its result or exception."""

    class State:
        New = "New"
        Invoked = "Invoked"
        Running = "Running"
        Ready = "Ready"
        Success = "Success"
        Error = "Error"
        Done = "Done"
        Unknown = "Unknown"

    def __init__(self, executor: Any, job: Any, call_id: int):
        self._executor = executor
        self._job = job
        self.executor_id = executor.executor_id
        self.job_id = job.job_id
        self.job_key = f"{executor.executor_id}-{job.job_id}"
        self.call_id = str(call_id).zfill(5)
        self.function_name = job.function_name
        self._state = ResponseFuture.State.Invoked
        self._result: Any = None
        self._exception: BaseException | None = None
        self._produce_output = True
        self._read = False
        self.stats: dict[str, Any] = {"host_submit_tstamp": job.submitted}
        self.futures = None  # Lithops: futures a call returned (nested jobs); unused here

    def __repr__(self) -> str:
        return f"<skeinrun.ResponseFuture {self.job_key}/{self.call_id} {self._state}>"

    # -- set by the job thread ------------------------------------------
    def _set_result(self, value: Any, t: float) -> None:
        self._result = value
        self.stats["host_result_done_tstamp"] = t
        self._state = ResponseFuture.State.Done if self._produce_output else ResponseFuture.State.Success

    def _set_exception(self, exc: BaseException, t: float) -> None:
        self._exception = exc
        self.stats["host_result_done_tstamp"] = t
        self._state = ResponseFuture.State.Error

    def _set_mapreduce(self) -> None:
        self._produce_output = False

    # -- Lithops' properties -------------------------------------------
    @property
    def invoked(self) -> bool:
        return self._state == ResponseFuture.State.Invoked

    @property
    def running(self) -> bool:
        return self._state in (ResponseFuture.State.Invoked, ResponseFuture.State.Running)

    @property
    def ready(self) -> bool:
        return self._state == ResponseFuture.State.Ready

    @property
    def error(self) -> bool:
        return self._state == ResponseFuture.State.Error

    @property
    def success(self) -> bool:
        return self._state in (ResponseFuture.State.Success, ResponseFuture.State.Error)

    @property
    def done(self) -> bool:
        return self._state in (ResponseFuture.State.Done, ResponseFuture.State.Error,
                               ResponseFuture.State.Success, ResponseFuture.State.Unknown)

    def cancel(self) -> None:
        self._job.cancel()

    def cancelled(self) -> bool:
        return self._job.cancelled

    def _wait(self, timeout: float | None = None) -> bool:
        return self._job.finished.wait(timeout)

    def status(self, throw_except: bool = True, internal_storage: Any = None, check_only: bool = False,
               wait_dur_sec: Any = None) -> dict:
        """The call's status once it is known (waits for it unless
        check_only); raises the function's exception when throw_except."""
        if not check_only:
            self._wait()
        if self.error and throw_except:
            raise self._exception
        return {
            "type": "__end__" if self.done else "__init__",
            "exception": self.error,
            "executor_id": self.executor_id,
            "job_id": self.job_id,
            "call_id": self.call_id,
            "state": self._state,
        }

    def result(self, throw_except: bool = True, internal_storage: Any = None, retries: Any = None,
               wait_dur_sec: Any = None, timeout: float | None = None) -> Any:
        """The call's return value (waits for it). A failed call raises its
        exception (throw_except) or returns None."""
        if not self._wait(timeout):
            raise TimeoutError(f"call {self.call_id} of job {self.job_id} not done after {timeout}s")
        if self.error:
            if throw_except:
                raise self._exception
            return None
        return self._result


class FuturesList(list):
    """A list of futures that can wait for and collect itself (Lithops'
    FuturesList): ``fs.get_result()``, ``fs.wait()``, and map or map_reduce
    over it."""

    def __init__(self, it=(), executor: Any = None):
        super().__init__(it)
        self.executor = executor

    def _ex(self):
        if self.executor is None:
            raise ValueError("these futures have no executor")
        return self.executor

    def wait(self, throw_except: bool = True, return_when: Any = _wait.ALL_COMPLETED, timeout: float | None = None,
             **_: Any):
        return self._ex().wait(fs=self, throw_except=throw_except, return_when=return_when, timeout=timeout)

    def get_result(self, throw_except: bool = True, timeout: float | None = None, **_: Any):
        return self._ex().get_result(fs=self, throw_except=throw_except, timeout=timeout)

    def map(self, map_function, **kwargs):
        return self._ex().map(map_function, self, **kwargs)

    def map_reduce(self, map_function, reduce_function, **kwargs):
        return self._ex().map_reduce(map_function, self, reduce_function, **kwargs)

    def plot(self, dst: str | None = None):
        return self._ex().plot(fs=self, dst=dst)

    def clean(self, **kwargs):
        return self._ex().clean(fs=self, **kwargs)


def wait_for(futures: list, return_when: Any, timeout: float | None) -> None:
    """Block until return_when holds for futures (ALL_COMPLETED, ANY_COMPLETED,
    ALWAYS, or a percentage of them done) or timeout seconds have passed."""
    if return_when == _wait.ALWAYS or not futures:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    if return_when == _wait.ANY_COMPLETED:
        need = 1
    else:
        pct = 100 if return_when == _wait.ALL_COMPLETED else float(return_when)
        need = max(1, min(len(futures), -(-int(len(futures) * pct) // 100)))
    jobs: dict[int, Any] = {}
    for f in futures:
        jobs.setdefault(id(f._job), f._job)
    cond = threading.Condition()
    first_open = 0  # futures before it are done (they stay done)

    def count() -> int:
        # A map's results land one by one, each waking this waiter: for
        # ALL_COMPLETED, resume the scan where it stopped (linear over the
        # whole wait, not per wake-up); otherwise count.
        nonlocal first_open
        if need < len(futures):
            return sum(1 for f in futures if f.done)
        while first_open < len(futures) and futures[first_open].done:
            first_open += 1
        return first_open

    # Each job sets its futures when it ends, or one by one as their
    # results stream: wake up on any job's end, and at each result unless
    # all of the job's calls are needed (it ends once they are done).
    mine: dict[int, int] = {}
    for f in futures:
        mine[id(f._job)] = mine.get(id(f._job), 0) + 1
    for j in jobs.values():
        whole = need == len(futures) and mine[id(j)] >= len(j.all_futures())
        j.add_listener(cond, each=not whole)
    try:
        with cond:
            while count() < need:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                cond.wait(left if left is not None else 1.0)
    finally:
        for j in jobs.values():
            j.remove_listener(cond)


def as_completed(futures: list, timeout: float | None = None):
    """Yield futures as they complete (as concurrent.futures.as_completed):
    a map's calls come one by one as their results land, not when their
    job ends. Raises TimeoutError when timeout seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(futures)
    jobs: dict[int, Any] = {}
    for f in pending:
        jobs.setdefault(id(f._job), f._job)
    cond = threading.Condition()
    for j in jobs.values():
        j.add_listener(cond)
    try:
        while pending:
            with cond:
                ready = [f for f in pending if f.done]
                if not ready:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"{len(pending)} of {len(futures)} futures not done within {timeout} s")
                    cond.wait(min(left, 1.0) if left is not None else 1.0)
                    continue
            for f in ready:
                pending.remove(f)
                yield f
    finally:
        for j in jobs.values():
            j.remove_listener(cond)
