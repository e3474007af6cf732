"""SkeinJobTrigger: waits in the triggerer for a Skein job to end.

It runs ``submit wait JOB`` as an asyncio subprocess. That command blocks on
the job's completion event on the bus, so the triggerer holds one idle
process per deferred task and polls nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from skein_provider.hooks.skein import SkeinHook

_TAIL = 8000  # characters of stderr carried in a failure event

# MIN_DEFERRAL is the default least time, in seconds, between the start of
# the wait and the event (the operators' min_deferral). Airflow 3.3 fails a
# deferred task whose trigger fires before the scheduler has handled the
# executor's report of the deferral ("finished with state success, but the
# task instance's state attribute is queued"; fixed upstream after 3.3.2
# for the queued and running states): a Skein job that ends before that
# report is handled would hit that race. The report comes within a
# scheduler loop, later on a busy scheduler. Deferral is for long jobs; a
# few seconds cost them nothing.
MIN_DEFERRAL = 5.0


def trigger_kwargs(owner: str, min_deferral: Any) -> dict[str, float]:
    """The SkeinJobTrigger keyword arguments for an operator's or sensor's
    min_deferral (None: the default), checked."""
    if min_deferral is None:
        return {}
    if isinstance(min_deferral, bool) or not isinstance(min_deferral, (int, float)) or not 0 <= min_deferral <= 3600:
        raise AirflowException(f"{owner}: min_deferral must be a number of seconds from 0 to 3600, got {min_deferral!r}")
    return {"min_deferral": float(min_deferral)}


def within(kwargs: dict[str, float], timeout: float | None) -> dict[str, float]:
    """kwargs with min_deferral at most half of the task's timeout (seconds;
    None or 0: none): a floor must not outlast the wait it delays, or a job
    that ended at once would time the task out."""
    if not timeout or timeout <= 0:
        return kwargs
    floor = kwargs.get("min_deferral", MIN_DEFERRAL)
    if floor <= timeout / 2:
        return kwargs
    return {**kwargs, "min_deferral": timeout / 2}


class SkeinJobTrigger(BaseTrigger):
    """Fires one event when the job ends: {"status": "success"|"error", "job_id", "exit_code", "message"}."""

    def __init__(self, job_id: str, skein_conn_id: str | None = SkeinHook.default_conn_name, submit_path: str | None = None,
                 min_deferral: float = MIN_DEFERRAL):
        super().__init__()
        self.job_id = job_id
        self.skein_conn_id = skein_conn_id
        self.submit_path = submit_path
        self.min_deferral = float(min_deferral)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "skein_provider.triggers.skein.SkeinJobTrigger",
            {"job_id": self.job_id, "skein_conn_id": self.skein_conn_id, "submit_path": self.submit_path,
             "min_deferral": self.min_deferral},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = SkeinHook(skein_conn_id=self.skein_conn_id, submit_path=self.submit_path)
        self.log.info("waiting for Skein job %s (submit wait)", self.job_id)
        started = time.monotonic()
        try:
            rc, _out, err = await hook.async_wait(self.job_id)
        except Exception as e:  # a missing binary or connection: report it to the task
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "exit_code": None, "message": str(e)})
            return
        left = self.min_deferral - (time.monotonic() - started)
        if left > 0:
            await asyncio.sleep(left)
        for line in err.splitlines():
            self.log.info("submit: %s", line)
        if rc == 0:
            yield TriggerEvent({"status": "success", "job_id": self.job_id, "exit_code": 0, "message": ""})
        else:
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "exit_code": rc, "message": err[-_TAIL:]})
