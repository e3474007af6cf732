"""RetryingFunctionExecutor: Lithops' retrying wrapper (lithops/retries.py).

A map's calls that raise are run again, each as a one-call map of its own
input, up to ``retries`` more times (the map's ``retries=``, else the config's
``lithops.retries``, else 0), while wait() goes on."""

from __future__ import annotations

from typing import Any, Callable

from . import wait as _wait
from .future import ResponseFuture


class RetryingFuture:
    """A call and its retries: the future of its latest attempt."""

    def __init__(self, response_future: ResponseFuture, map_function: Callable, input: Any,
                 retries: int | None = None, **kwargs: Any):
        self.response_future = response_future
        self.map_function = map_function
        self.input = input
        self.retries = retries or 0
        self.map_kwargs = kwargs
        self.failure_count = 0
        self.cancelled = False

    def _inc_failure_count(self) -> None:
        self.failure_count += 1

    def _should_retry(self) -> bool:
        return not self.cancelled and self.failure_count <= self.retries

    def _retry(self, executor: Any) -> None:
        self.response_future = executor.map(self.map_function, [self.input], **self.map_kwargs)[0]

    def cancel(self) -> None:
        """No more retries (a running attempt goes on)."""
        self.cancelled = True

    @property
    def done(self) -> bool:
        return self.response_future.done

    @property
    def error(self) -> bool:
        return self.response_future.error

    @property
    def _exception(self):
        return self.response_future._exception

    @property
    def stats(self) -> dict:
        return self.response_future.stats

    def status(self, throw_except: bool = True, internal_storage: Any = None, check_only: bool = False):
        return self.response_future.status(throw_except=throw_except, check_only=check_only)

    def result(self, throw_except: bool = True, internal_storage: Any = None):
        return self.response_future.result(throw_except=throw_except)


class RetryingFunctionExecutor:
    """FunctionExecutor's interface, with ``retries`` on map()."""

    def __init__(self, executor: Any):
        self.executor = executor
        self.config = executor.config

    def __enter__(self) -> "RetryingFunctionExecutor":
        self.executor.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.executor.__exit__(exc_type, exc, tb)

    def map(self, map_function: Callable, map_iterdata: Any, chunksize: int | None = None, extra_args: Any = None,
            extra_env: dict | None = None, runtime_memory: int | None = None, obj_chunk_size: int | None = None,
            obj_chunk_number: int | None = None, obj_newline: str | None = "\n", timeout: float | None = None,
            include_modules: list | None = [], exclude_modules: list | None = [],
            retries: int | None = None) -> list[RetryingFuture]:
        retries_to_use = retries if retries is not None else self.config.get("lithops", {}).get("retries", 0)
        kwargs = dict(chunksize=chunksize, extra_args=extra_args, extra_env=extra_env, runtime_memory=runtime_memory,
                      obj_chunk_size=obj_chunk_size, obj_chunk_number=obj_chunk_number, obj_newline=obj_newline,
                      timeout=timeout, include_modules=include_modules, exclude_modules=exclude_modules)
        data = self.executor._iterdata(map_iterdata)
        futures = self.executor.map(map_function, data, **kwargs)
        return [RetryingFuture(f, map_function=map_function, input=i, retries=retries_to_use, **kwargs)
                for i, f in zip(data, futures)]

    def wait(self, fs: list, throw_except: bool = True, return_when: Any = _wait.ALL_COMPLETED,
             download_results: bool = False, timeout: float | None = None, threadpool_size: int = _wait.THREADPOOL_SIZE,
             wait_dur_sec: Any = _wait.WAIT_DUR_SEC, show_progressbar: bool = True):
        """As FunctionExecutor.wait, resubmitting each failed call while it
        has retries left; a call out of retries is done (with its error)."""
        lookup = {id(f.response_future): f for f in fs}
        while True:
            done, pending = self.executor.wait([f.response_future for f in fs], throw_except=False,
                                               return_when=return_when, timeout=timeout)
            retrying_done = []
            retrying_pending = [lookup[id(r)] for r in pending]
            for r in done:
                rf = lookup[id(r)]
                if r.error:
                    rf._inc_failure_count()
                    if rf._should_retry():
                        rf._retry(self.executor)
                        retrying_pending.append(rf)
                        lookup[id(rf.response_future)] = rf
                        continue
                    if throw_except:
                        raise r._exception
                retrying_done.append(rf)
            if return_when == _wait.ALWAYS:
                break
            if return_when == _wait.ANY_COMPLETED and retrying_done:
                break
            if return_when == _wait.ALL_COMPLETED and not retrying_pending:
                break
            if timeout is not None and not retrying_done and pending:
                break
        return retrying_done, retrying_pending

    def get_result(self, fs: list, throw_except: bool = True, timeout: float | None = None, **_: Any) -> list:
        self.wait(fs, throw_except=throw_except, timeout=timeout)
        return [f.result(throw_except=throw_except) for f in fs]

    def clean(self, fs: Any = None, cs: Any = None, clean_cloudobjects: bool = True, clean_fn: bool = False,
              force: bool = False) -> None:
        self.executor.clean([f.response_future for f in fs] if fs else None, cs, clean_cloudobjects, clean_fn, force)

    def __getattr__(self, name: str):
        return getattr(self.executor, name)
